"""Where webhooks may send: FLAGSVC_WEBHOOK_ALLOW, a comma-separated list of host names (`hooks.slack.com`,
`*.example.com` for any name under it) and addresses or CIDR blocks (`203.0.113.7`, `10.20.0.0/16`). Empty:
nothing is allowed.

Two checks. When a webhook is created, its URL's host must be a listed name, or an address inside a listed block.
When it is delivered, the name is resolved and every address it resolves to is checked again: a listed name may
point only to public addresses, or to addresses inside a listed block, so a name cannot later be pointed at the
server's own network (loopback, private, link-local, the cloud metadata address). The sender then connects to
the address that was checked, not to a second resolution.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class AllowListError(ValueError):
    pass


def _address(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


@dataclass(frozen=True)
class AllowList:
    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()  # from `*.example.com`: ".example.com"
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, raw: str) -> AllowList:
        names: set[str] = set()
        suffixes: list[str] = []
        networks: list[Network] = []
        for item in (part.strip().lower() for part in raw.split(",")):
            if not item:
                continue
            if item.startswith("*."):
                if not _is_name(item[2:]):
                    raise AllowListError(f"not a host name pattern: {item!r}")
                suffixes.append(item[1:])
            elif "/" in item or _address(item) is not None:
                try:
                    networks.append(ipaddress.ip_network(item.strip("[]"), strict=True))
                except ValueError as e:
                    raise AllowListError(f"not an address or CIDR block: {item!r} ({e})") from None
            elif _is_name(item):
                names.add(item.rstrip("."))
            else:
                raise AllowListError(f"not a host name, address or CIDR block: {item!r}")
        return cls(frozenset(names), tuple(suffixes), tuple(networks))

    def __bool__(self) -> bool:
        return bool(self.names or self.suffixes or self.networks)

    def describe(self) -> str:
        entries = [*sorted(self.names), *(f"*{s}" for s in self.suffixes), *(str(n) for n in self.networks)]
        return ", ".join(entries) or "nothing (FLAGSVC_WEBHOOK_ALLOW is empty)"

    def _in_networks(self, address: Address) -> bool:
        return any(address in network for network in self.networks)

    def permits_host(self, host: str) -> bool:
        """Whether a URL may name `host` (checked when a webhook is created)."""
        host = host.lower().rstrip(".")
        address = _address(host)
        if address is not None:
            return self._in_networks(address)
        return host in self.names or any(host.endswith(s) for s in self.suffixes)

    def refusal(self, host: str, addresses: list[str]) -> str | None:
        """Why `host`, resolved to `addresses`, may not be sent to now (None: it may)."""
        if not self.permits_host(host):
            return f"{host} is not in FLAGSVC_WEBHOOK_ALLOW ({self.describe()})"
        if not addresses:
            return f"{host} resolved to no address"
        for text in addresses:
            address = _address(text)
            if address is None:
                return f"{host} resolved to {text!r}, not an address"
            if self._in_networks(address):
                continue
            if not address.is_global:
                return (f"{host} resolves to {address}, an address of a local or private network that no CIDR block "
                        "of FLAGSVC_WEBHOOK_ALLOW allows")
        return None


def _is_name(text: str) -> bool:
    labels = text.rstrip(".").split(".")
    return 0 < len(text) <= 253 and all(
        0 < len(label) <= 63 and label.isascii() and all(c.isalnum() or c == "-" for c in label)
        and not label.startswith("-") and not label.endswith("-") for label in labels)
