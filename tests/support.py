"""Constants and small helpers the tests share (fixtures live in conftest.py)."""

from flagsvc.config import Settings

ADMIN_TOKEN = "admin-secret-token"
SDK_KEY = "sdk-secret-key-1"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SDK = {"Authorization": f"Bearer {SDK_KEY}"}
TEST_SETTINGS = Settings(admin_tokens={"ops": ADMIN_TOKEN}, sdk_keys={"web": SDK_KEY})
