"""``lazy_exports`` imports a package's re-exported module only when one of its names is first read."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sigil.kit.lazy import lazy_exports


def test_a_name_is_imported_on_first_read_and_kept_on_the_package() -> None:
    """Importing ``sigil.enforcer`` leaves its proxy unimported; reading ``InboundProxy`` imports it once."""
    probe = (
        "import sys, sigil.enforcer as e\n"
        "before = 'sigil.enforcer.proxy.listener' in sys.modules\n"
        "cls = e.InboundProxy\n"
        "print(before, 'sigil.enforcer.proxy.listener' in sys.modules, 'InboundProxy' in vars(e))\n"
    )
    result = subprocess.run(  # noqa: S603 - this interpreter on our own snippet
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "True", "True"]


def test_an_unknown_name_is_an_attribute_error_naming_the_package() -> None:
    """A name the package does not export fails as a normal missing attribute would."""
    getattr_ = lazy_exports("sigil.kit", {"Backoff": "sigil.kit.backoff"})
    with pytest.raises(AttributeError, match=r"module 'sigil\.kit' has no attribute 'Nope'"):
        getattr_("Nope")
