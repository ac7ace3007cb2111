"""Other meshes' policy documents among Sigil's: set aside where they are read, translated in one batch per source.

A reader meets Istio's or Linkerd's documents beside Sigil's own (a directory, a CRD watch, ``check``,
``effective``, ``diff``). Each dialect's documents of one source go to its translator together
(:mod:`.dialects.base`: Linkerd's meaning is spread over a ``Server``, the ``AuthorizationPolicy`` objects naming
it and the authentications they require), and the Sigil documents it returns are judged as usual
(:func:`~sigil.enforcer.policy.documents.judge`), each under a :class:`~sigil.enforcer.policy.schema.Where`
naming the objects it came from. Findings travel beside: the approximate ones are logged by the reader, the
refused ones become :class:`~sigil.enforcer.errors.TranslationRefusedError` refusals, reported like any refused
document. A translator that fails outright refuses its whole batch rather than let part of it through.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from sigil.enforcer.errors import EnforcerError, TranslationRefusedError
from sigil.enforcer.policy.dialects.base import (
    Exactness,
    Finding,
    SourcedDocument,
    TranslateOptions,
    context_kind,
    dialect_for_group,
    foreign_group,
    takes_context,
)
from sigil.enforcer.policy.documents import AcceptedPolicy, SourceResult, judge
from sigil.enforcer.policy.schema import Where

__all__ = ["ForeignDocuments", "judge_foreign", "sourced", "split_foreign", "translate_foreign"]


def sourced(where: Where) -> str:
    """How a finding names where a document was read: ``file.yaml#2`` (document index from 0) or ``file``."""
    return where.file if where.document is None else f"{where.file}#{where.document}"


def split_foreign(
    documents: Iterable[tuple[object, Where]],
) -> tuple[list[tuple[object, Where]], list[SourcedDocument]]:
    """Sigil's own documents (and anything unrecognised, for the judge to refuse) apart from foreign ones.

    Kubernetes objects a dialect reads beside its policy (:func:`~.dialects.base.context_kind`: a Linkerd
    namespace's default-policy annotation, a workload's named ports) go with the foreign documents.
    """
    own: list[tuple[object, Where]] = []
    foreign: list[SourcedDocument] = []
    for document, where in documents:
        if foreign_group(document) is None and context_kind(document) is None:
            own.append((document, where))
        else:
            foreign.append(SourcedDocument(document, sourced(where)))  # type: ignore[arg-type]
    return own, foreign


@dataclass(frozen=True, slots=True)
class ForeignDocuments:
    """What the translators made of one source's foreign documents: Sigil documents to judge, findings, and
    the refusals (REFUSED findings and failed translators); ``broken`` when a translator failed, so the source
    keeps what its last good translation held."""

    documents: tuple[tuple[object, Where], ...] = ()
    findings: tuple[Finding, ...] = ()
    errors: tuple[EnforcerError, ...] = ()
    broken: bool = False

    @property
    def approximate(self) -> tuple[Finding, ...]:
        """The findings that translated a part with the source mesh's own TCP meaning (to be logged)."""
        return tuple(f for f in self.findings if f.exactness is Exactness.APPROXIMATE)


def translate_foreign(
    documents: Sequence[SourcedDocument],
    options: TranslateOptions,
    *,
    installed: Sequence[str] = (),
) -> ForeignDocuments:
    """Translate ``documents`` (one source's foreign documents), one batch per dialect, in the order met.

    ``installed`` names API groups known to be in force where the documents come from (the issuer's cluster
    serves their kinds): a dialect of those that reads Kubernetes objects (Linkerd's namespace defaults) gets
    them even when none of its own documents is in the batch. Elsewhere such objects need a policy beside them.
    """
    batches: dict[str, list[SourcedDocument]] = {group: [] for group in installed}
    context: list[SourcedDocument] = []
    for document in documents:
        group = foreign_group(document.document)
        if group is not None:
            batches.setdefault(group, []).append(document)
        elif context_kind(document.document) is not None:
            context.append(document)
    translated: list[tuple[object, Where]] = []
    findings: list[Finding] = []
    errors: list[EnforcerError] = []
    broken = False
    readers = [group for group in batches if takes_context(group)]
    for group in readers:
        batches[group].extend(context)
    if context and not readers:
        errors.extend(
            TranslationRefusedError(
                document.where,
                "",
                source=f"{context_kind(document.document)} object",
                reason="a Kubernetes object is read only beside Linkerd policy of the same source "
                "(its default-policy annotation, its named ports); it is not a policy",
            )
            for document in context
        )
    for group, batch in batches.items():
        if not batch:
            continue  # an installed group with nothing to translate
        try:
            dialect = dialect_for_group(group)
        except ImportError as err:
            # This build has no translator for the group: refuse, never guess.
            broken = True
            errors.extend(
                TranslationRefusedError(
                    document.where,
                    "",
                    source=f"{group} document",
                    reason=f"no translator for {group} is installed ({err})",
                )
                for document in batch
            )
            continue
        try:
            translation = dialect.translate(batch, options)
        except (KeyError, TypeError, ValueError) as err:
            # A translator that chokes on a document it should have refused: refuse the whole batch.
            broken = True
            for document in batch:
                errors.append(
                    TranslationRefusedError(
                        document.where,
                        "",
                        source=f"{dialect.name} document",
                        reason=f"the {dialect.name} translator failed ({err!r})",
                    )
                )
            continue
        for item in translation.documents:
            translated.append((dict(item.document), Where(", ".join(item.sources))))
        findings.extend(translation.findings)
        errors.extend(
            TranslationRefusedError(
                finding.where, finding.path, source=finding.source, reason=finding.message
            )
            for finding in translation.findings
            if finding.exactness is Exactness.REFUSED
        )
    return ForeignDocuments(tuple(translated), tuple(findings), tuple(errors), broken)


def judge_foreign(
    documents: Sequence[SourcedDocument],
    *,
    source: str,
    options: TranslateOptions,
    known: Mapping[str, AcceptedPolicy] | None = None,
) -> SourceResult:
    """Translate one source's foreign ``documents`` and judge what comes out, as the source named ``source``:
    refused parts join the refusals, and every finding rides along in ``findings``."""
    foreign = translate_foreign(documents, options)
    result = judge(foreign.documents, source=source, known=known)
    return replace(
        result,
        errors=(*result.errors, *foreign.errors),
        findings=foreign.findings,
        broken=result.broken or foreign.broken,
    )
