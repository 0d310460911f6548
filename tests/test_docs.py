"""Documentation that is generated from code must not drift from it."""

from pathlib import Path

from gateway.config import describe

ROOT = Path(__file__).resolve().parent.parent


def test_configuration_reference_is_current() -> None:
    # Regenerate: python -c "from gateway.config import describe; print(describe())" \
    #   > docs/configuration.md
    assert (ROOT / "docs" / "configuration.md").read_text() == describe() + "\n"


def test_readme_starts_with_the_two_commands() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    block = lines[lines.index("```sh") + 1: lines.index("```")]
    assert [line.split()[0:2] for line in block] == [["make", "run"], ["make", "test"]]
