"""The wire protocol between SDKs and the flagsvc server, in one place: the bucketing rule (`bucketing`), the
latency sketch (`sketch`), the constants and limits (`limits`), and the typed shapes of the snapshot, the outcome
batch and the stats (`shapes`); docs/protocol.md describes them.

The server imports these too, so both sides always agree. The SDK distribution holds them because it is the
lighter of the two: nothing here needs more than `mmh3`. `shapes` needs `typing`, which `import flagsvc_client`
does not pay for: the SDK reads the shapes only when type-checked.
"""
