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


def _readme_layout() -> set[str]:
    """The modules the README's layout block names under ``gateway/``, as paths."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("gateway/")
    names: set[str] = set()
    folders: list[tuple[int, str]] = []  # (indent, folder) of the folders we are inside
    for line in lines[start + 1:]:
        if not line.startswith("  "):
            break
        indent = len(line) - len(line.lstrip())
        entry = line.split()[0]
        if not entry.endswith((".py", "/")) or entry == "data/":
            continue  # a description's continuation line; data is not a module
        folders = [(i, f) for i, f in folders if i < indent]
        path = "".join(f for _, f in folders) + entry
        if entry.endswith("/"):
            folders.append((indent, entry))
        else:
            names.add(path)
    return names


def test_the_readme_layout_is_the_package_listing() -> None:
    """Every module of gateway/ is in the README's layout and nothing else is (issue 11):
    listing gateway/ shows the pipeline, and the README says what each part does. The web
    page's modules are named on one line (web/: app, pages, ...)."""
    package = ROOT / "gateway"
    modules = {p.relative_to(package).as_posix() for p in package.rglob("*.py")
               if p.name != "__init__.py" and "web" not in p.relative_to(package).parts}
    assert _readme_layout() == modules
    web_line = next(line for line in (ROOT / "README.md").read_text().splitlines()
                    if line.strip().startswith("web/"))
    named = {word.strip(",()") for word in web_line.split(":", 1)[1].split()}
    assert {p.stem for p in (package / "admin" / "web").glob("*.py")} - {"__init__"} <= named
