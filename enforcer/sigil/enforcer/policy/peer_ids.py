"""Reading a peer's namespace and ServiceAccount back out of its SPIFFE ID, under the workload ID template.

The issuer names Kubernetes workloads by a template (``workload_id_template``, default
``ns/{namespace}/sa/{service_account}``, SPIRE's and Istio's layout). ServiceAccount, ``SameNamespace`` and
``Namespaces`` sources (authz.md 7.1) ask where a peer runs, and the only thing an enforcer knows about a peer
is its verified ID: so the template is run backwards. Only IDs of the local trust domain are read (another
domain's IDs follow its own issuer's layout, which this one does not know), and an ID that does not fit the
template names no namespace, so such a peer matches no namespace-based source.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field

from sigil.enforcer.errors import RequestError

__all__ = ["DEFAULT_WORKLOAD_ID_TEMPLATE", "PeerPlace", "WorkloadIdPattern"]

DEFAULT_WORKLOAD_ID_TEMPLATE = "ns/{namespace}/sa/{service_account}"
# The issuer's template fields (sigil.issuer.kube.identity.KubeIdentity); a segment never holds a slash.
_FIELDS = frozenset(
    ("namespace", "service_account", "pod_name", "pod_uid", "node_name", "node_uid")
)


@dataclass(frozen=True, slots=True)
class PeerPlace:
    """Where a local peer runs: its namespace, and its ServiceAccount when the template names one."""

    namespace: str
    service_account: str | None


@dataclass(frozen=True, slots=True)
class WorkloadIdPattern:
    """The workload ID template, compiled to read IDs back; raises :class:`RequestError` for a bad one."""

    template: str = DEFAULT_WORKLOAD_ID_TEMPLATE
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            parsed = list(string.Formatter().parse(self.template))
        except ValueError as err:
            raise RequestError("workload ID template", self.template, str(err)) from err
        pattern, seen = "", set()
        for literal, name, spec, conversion in parsed:
            pattern += re.escape(literal)
            if name is None:
                continue
            if name not in _FIELDS or spec or conversion:
                allowed = ", ".join(sorted(_FIELDS))
                raise RequestError(
                    "workload ID template", self.template, f"only bare {{field}} of {allowed}"
                )
            pattern += f"(?P={name})" if name in seen else f"(?P<{name}>[^/]+)"
            seen.add(name)
        if "namespace" not in seen:
            raise RequestError("workload ID template", self.template, "names no {namespace}")
        object.__setattr__(self, "_regex", re.compile(pattern))

    def place_of(self, path: str) -> PeerPlace | None:
        """The namespace (and ServiceAccount) a local ID's ``path`` (``/ns/a/sa/b``) names; None if it fits not."""
        found = self._regex.fullmatch(path[1:])
        if found is None:
            return None
        groups = found.groupdict()
        return PeerPlace(groups["namespace"], groups.get("service_account"))
