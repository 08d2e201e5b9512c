"""The example organisation and policies that ``grantflow dev`` starts with (shipped with the package)."""

from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parent
ORGANISATION_FILE = EXAMPLES_DIR / "organisation.toml"
POLICIES_FILE = EXAMPLES_DIR / "policies.toml"
