"""Errors of the enforcer, hung under :class:`sigil.ca.errors.SigilError`.

The enforcer runs inside workloads and reads policies written by people; its errors name the file, the
field and what was expected so that the person who wrote the policy can fix it without reading our code::

    SigilError
    └── EnforcerError
        ├── PolicyError                  (file, path, expected, document, found)
        │   ├── UnknownFieldError        (file, path, known, document)
        │   ├── PolicyYamlError          (file, line, column, problem)
        │   └── TranslationRefusedError  (file, path, source, reason)
        ├── PolicySourceError            (path, reason)
        ├── RequestError                 (field, value, reason)
        ├── SvidVerificationError        (reason, detail, spiffe_id)
        └── IdentitySourceError          (source, reason)

Programmer misuse (a wrong type handed to an API) stays ``TypeError``/``ValueError``, as in pyca/cryptography.
"""

from __future__ import annotations

from sigil.ca.errors import SigilError

__all__ = [
    "EnforcerError",
    "IdentitySourceError",
    "PolicyError",
    "PolicySourceError",
    "PolicyYamlError",
    "RequestError",
    "SvidVerificationError",
    "TranslationRefusedError",
    "UnknownFieldError",
]

_FOUND_LIMIT = 60


class EnforcerError(SigilError):
    """Something the enforcer refused or could not do."""


class PolicyError(EnforcerError):
    """A policy document that breaks the schema: ``path`` is the field (``spec.rules[0].sources[1].type``).

    ``document`` is the 0-based index of the document in a multi-document YAML file, or None when the file
    holds one document; ``found`` is a short rendering of the offending value, or None when the field is absent.
    """

    def __init__(
        self,
        file: str,
        path: str,
        expected: str,
        *,
        document: int | None = None,
        found: str | None = None,
    ) -> None:
        where = file if document is None else f"{file} (document {document + 1})"
        field = f"{path}: " if path else ""
        got = "" if found is None else f", found {_shorten(found)}"
        super().__init__(f"{where}: {field}expected {expected}{got}")
        self.file = file
        self.path = path
        self.expected = expected
        self.document = document
        self.found = found


class UnknownFieldError(PolicyError):
    """A field the schema does not have at ``path`` (often a misspelling); ``known`` lists those it has.

    Refused rather than ignored: an API server would prune it silently, and a pruned criterion (a misspelled
    ``sources``) would leave a rule that matches more peers than its author wrote.
    """

    def __init__(
        self, file: str, path: str, known: tuple[str, ...], *, document: int | None = None
    ) -> None:
        listing = ", ".join(known) or "none"
        super().__init__(file, path, f"a known field (one of {listing})", document=document)
        where = file if document is None else f"{file} (document {document + 1})"
        self.args = (f"{where}: {path}: unknown field (the fields here are: {listing})",)
        self.known = known


class TranslationRefusedError(PolicyError):
    """A part of another mesh's policy (``source``, read at ``file``) that Sigil refused to translate: ``path``
    within the object and the ``reason`` (what it would have meant in that mesh)."""

    def __init__(self, file: str, path: str, *, source: str, reason: str) -> None:
        super().__init__(file, path, "something Sigil can translate")
        at = f" {path}" if path else ""
        self.args = (f"{file}: {source}{at}: not translated: {reason}",)
        self.source = source
        self.reason = reason


class PolicyYamlError(PolicyError):
    """A policy file that is not YAML at all; ``line`` and ``column`` are 1-based, None when unknown."""

    def __init__(self, file: str, *, line: int | None, column: int | None, problem: str) -> None:
        position = f"line {line}, column {column}" if line is not None else "somewhere"
        super().__init__(file, "", f"valid YAML ({problem} at {position})")
        self.line = line
        self.column = column
        self.problem = problem


class PolicySourceError(EnforcerError):
    """A policy directory or file that cannot be read at all."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"policy source {path}: {reason}")
        self.path = path
        self.reason = reason


class RequestError(EnforcerError):
    """A decision request that cannot be evaluated: a malformed label, port or namespace."""

    def __init__(self, field: str, value: str, reason: str) -> None:
        super().__init__(f"{field} {_shorten(value)}: {reason}")
        self.field = field
        self.value = value
        self.reason = reason


class SvidVerificationError(EnforcerError):
    """A presented certificate chain that is not a valid X509-SVID of a trusted domain.

    ``reason`` is a :class:`sigil.enforcer.verify.Refusal` value (``expired``, ``bad_chain``...), stable enough
    for metrics labels and 403 bodies; ``detail`` says what exactly was wrong; ``spiffe_id`` is the ID the
    leaf claims, None when it names none (or before it was read).
    """

    def __init__(self, reason: str, detail: str, *, spiffe_id: str | None = None) -> None:
        who = "" if spiffe_id is None else f" ({spiffe_id})"
        super().__init__(f"peer SVID refused{who}: {reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.spiffe_id = spiffe_id


class IdentitySourceError(EnforcerError):
    """The workload's own SVID and bundles cannot be had: a Workload API socket or files that fail."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"identity source {source}: {reason}")
        self.source = source
        self.reason = reason


def _shorten(text: str) -> str:
    """Keep messages one line long when a policy holds a huge or multi-line value."""
    flat = text.replace("\n", "\\n")
    return flat if len(flat) <= _FOUND_LIMIT else flat[: _FOUND_LIMIT - 3] + "..."
