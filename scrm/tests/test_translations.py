"""Both languages stay complete: every translatable string is in the catalogs, translated, and compiled."""

import shutil
import subprocess
import sys
from pathlib import Path

import polib
import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ["accounts", "customers", "tags", "segments", "messaging", "journeys", "scrm", "templates", "manage.py"]
LOCALES = ["zh_Hans", "en"]


def catalog(locale: str, root: Path = ROOT) -> polib.POFile:
    return polib.pofile(str(root / "locale" / locale / "LC_MESSAGES" / "django.po"))


def msgids(po: polib.POFile) -> set[tuple[str, str]]:
    return {(e.msgctxt or "", e.msgid) for e in po if not e.obsolete}


@pytest.mark.parametrize("locale", LOCALES)
def test_every_string_is_translated_and_compiled(locale):
    po = catalog(locale)
    untranslated = [e.msgid for e in po if not e.obsolete and (not e.translated() or "fuzzy" in e.flags)]
    compiled = polib.mofile(str(ROOT / "locale" / locale / "LC_MESSAGES" / "django.mo"))

    assert untranslated == []
    in_po = {(e.msgctxt or "", e.msgid): e.msgstr for e in po if not e.obsolete and not e.msgid_plural}
    in_mo = {(e.msgctxt or "", e.msgid): e.msgstr for e in compiled if e.msgid and not e.msgid_plural}
    assert in_mo == in_po, "the .mo is stale: run `make messages`"


def test_catalogs_hold_every_string_in_the_code(tmp_path):
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "tests"))
        else:
            shutil.copy(source, tmp_path / name)
    (tmp_path / "locale" / "zh_Hans").mkdir(parents=True)
    subprocess.run(
        [sys.executable, "manage.py", "makemessages", "-l", "zh_Hans", "--no-obsolete"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        env={"DJANGO_SETTINGS_MODULE": "scrm.test_settings", "PATH": "/usr/bin:/bin"},
    )

    in_code = msgids(catalog("zh_Hans", tmp_path))

    assert sorted(in_code - msgids(catalog("zh_Hans"))) == [], "run `make messages` and translate the new strings"
