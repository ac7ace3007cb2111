"""Who a Kubernetes token proved the caller to be, and the SPIFFE IDs that follow from it.

Kept apart from the TokenReview client so the ID rules can be checked at configuration time, before any request:
a bad workload ID template must stop ``sigil-server`` from starting, not fail the first workload that asks.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field, fields

from sigil.ca.errors import InvalidSpiffeIdError
from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.issuer.datastore.registry import refuse_reserved
from sigil.issuer.errors import ConfigError, NotEntitledError

__all__ = [
    "DEFAULT_WORKLOAD_ID_TEMPLATE",
    "KubeIdentity",
    "ServiceAccountRef",
    "WorkloadIdTemplate",
]

DEFAULT_WORKLOAD_ID_TEMPLATE = "ns/{namespace}/sa/{service_account}"
# RFC 1123 DNS labels, which namespace and ServiceAccount names are (ServiceAccounts may also hold dots).
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")


@dataclass(frozen=True, slots=True, order=True)
class ServiceAccountRef:
    """A ServiceAccount, written ``NAMESPACE:NAME`` as in SPIRE's ``service_account_allow_list``."""

    namespace: str
    name: str

    def __post_init__(self) -> None:
        for part in (self.namespace, self.name):
            if _NAME.fullmatch(part) is None or len(part) > 253:
                raise ConfigError("service account", f"{part!r} is not a Kubernetes object name")

    @classmethod
    def parse(cls, value: str) -> ServiceAccountRef:
        """Parse ``NAMESPACE:NAME``."""
        namespace, sep, name = value.partition(":")
        if not sep:
            raise ConfigError("service account", f"{value!r} is not written NAMESPACE:NAME")
        return cls(namespace, name)

    def __str__(self) -> str:
        return f"{self.namespace}:{self.name}"


@dataclass(frozen=True, slots=True)
class KubeIdentity:
    """A pod proved by its projected ServiceAccount token, checked against the live pod and node objects."""

    namespace: str
    service_account: str
    pod_name: str
    pod_uid: str
    node_name: str
    node_uid: str

    @property
    def service_account_ref(self) -> ServiceAccountRef:
        return ServiceAccountRef(self.namespace, self.service_account)


_TEMPLATE_FIELDS = frozenset(f.name for f in fields(KubeIdentity))
#: How many rendered IDs a template keeps: an agent asks for the same pods at every renewal, and rendering one
#: (the format, the ID's checks, the reserved paths) cost about 13 µs, a twentieth of issuing its SVID.
_RENDERED = 16384


@dataclass(frozen=True, slots=True)
class WorkloadIdTemplate:
    """A ``str.format`` template for a workload's SPIFFE ID path, over the fields of :class:`KubeIdentity`.

    Only bare ``{field}`` replacements are allowed: no attribute or index access, no conversions or format specs,
    which would let a configuration file reach into objects or produce IDs nobody reviewed.
    """

    template: str = DEFAULT_WORKLOAD_ID_TEMPLATE
    #: :meth:`render`'s answers, by its arguments (a pure function of them and the template).
    _rendered: Callable[[TrustDomain, KubeIdentity], SpiffeId] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_rendered", functools.lru_cache(maxsize=_RENDERED)(self._render))
        try:
            parsed = list(string.Formatter().parse(self.template))
        except ValueError as err:
            raise ConfigError("workload ID template", f"{self.template!r}: {err}") from err
        used = [(name, spec, conv) for _, name, spec, conv in parsed if name is not None]
        if not used:
            raise ConfigError(
                "workload ID template", "uses no field, so every workload would share one ID"
            )
        for name, spec, conversion in used:
            if name not in _TEMPLATE_FIELDS:
                allowed = ", ".join(sorted(_TEMPLATE_FIELDS))
                raise ConfigError(
                    "workload ID template", f"unknown field {{{name}}} (allowed: {allowed})"
                )
            if spec or conversion:
                raise ConfigError(
                    "workload ID template", f"{{{name}}} may not carry a conversion or format spec"
                )
        sample = KubeIdentity("ns", "sa", "pod", "uid", "node", "nodeuid")
        try:
            self.render(TrustDomain("example.org"), sample)
        except InvalidSpiffeIdError as err:
            raise ConfigError(
                "workload ID template", f"{self.template!r} gives no valid ID: {err.rule}"
            ) from err
        except NotEntitledError as err:
            raise ConfigError("workload ID template", f"{self.template!r}: {err.why}") from err

    def render(self, trust_domain: TrustDomain, identity: KubeIdentity) -> SpiffeId:
        """The workload's SPIFFE ID, for example ``spiffe://TD/ns/NS/sa/SA``.

        A pod whose names would make it one of Sigil's agent or server IDs (a template such as
        ``{namespace}/{service_account}`` in namespace ``sigil``) is refused with :class:`NotEntitledError`.
        """
        return self._rendered(trust_domain, identity)

    def _render(self, trust_domain: TrustDomain, identity: KubeIdentity) -> SpiffeId:
        values = {name: getattr(identity, name) for name in _TEMPLATE_FIELDS}
        spiffe_id = SpiffeId(trust_domain, "/" + self.template.format_map(values))
        refuse_reserved(spiffe_id, source="the workload ID template")
        return spiffe_id
