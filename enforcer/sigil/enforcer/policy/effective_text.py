"""The effective policy of a workload as text for a person, drawn from its documented JSON form.

Both ``sigil-enforcer effective`` (which computes the view) and ``sigil-server policy effective`` (which receives
it from a running server's admin socket) print the same text, so the text is drawn from the one shape both
have: :meth:`~sigil.enforcer.policy.effective.EffectivePolicy.to_dict`'s, documented in the README.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sigil.enforcer.policy.origin import Origin
from sigil.enforcer.policy.peer_classes import ClassKind

__all__ = ["render_text"]


def render_text(view: Mapping[str, Any]) -> str:
    """The view: the target, its policies with their sources, its rules, then each class of peer by port."""
    target = view["target"]
    labels = ",".join(f"{k}={v}" for k, v in target["labels"].items()) or "no labels"
    namespace_labels = ",".join(f"{k}={v}" for k, v in target["namespace_labels"].items())
    revision = "" if view["revision"] is None else f", policy revision {view['revision']}"
    lines = [
        f"effective policy of a pod in namespace {target['namespace']} ({labels})",
        f"  namespace labels: {namespace_labels}",
        f"  trust domain {target['trust_domain']}, default {target['default']}{revision}",
        "",
        "policies, in evaluation order:" if view["policies"] else "no policy selects this pod",
    ]
    for policy in view["policies"]:
        lines.append(f"  {_policy(policy)}")
        lines.append(f"      from {_source(policy['source'])}")
        if policy.get("relabel_escapable"):
            lines.append(
                "      WARNING: selects pods by labels their namespace's owner can change; "
                "relabelling a pod escapes this Admin policy"
            )
    if view["rules"]:
        lines += ["", "rules, in evaluation order:"]
    for rule in view["rules"]:
        ports = _rule_ports(rule)
        sources = "any peer" if rule["sources"] is None else ", ".join(rule["sources"]) or "nothing"
        if rule.get("not_sources"):
            sources += " except " + ", ".join(rule["not_sources"])
        flags = (" [dry-run]" if rule["dry_run"] else "") + (
            " [SHADOWED]" if rule["shadowed"] else ""
        )
        lines.append(
            f"  {rule['order']:>3}  {rule['tier']:<9} {rule['policy']} rule {rule['rule']}: "
            f"{rule['action']} {sources} on {ports}{flags}"
        )
    lines += ["", "access:"]
    for rows in _by_peer(view["access"]):
        # A class whose every address group is decided alike is shown once, for any address.
        alike = all(_same(row["verdicts"], rows[0]["verdicts"]) for row in rows)
        for row in rows[:1] if alike else rows:
            address = row.get("address") or {"group": "any address"}
            where = "" if alike else f"  [address: {_address(address)}]"
            lines.append(f"  {_peer(row['peer'])}{where}")
            lines.extend(_verdict_lines(row["verdicts"]))
    return "\n".join(lines)


def _by_peer(access: list[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """Access rows grouped by peer class, in their order (the rows of one class are adjacent)."""
    groups: list[list[Mapping[str, Any]]] = []
    for row in access:
        if groups and groups[-1][0]["peer"] == row["peer"]:
            groups[-1].append(row)
        else:
            groups.append([row])
    return groups


def _same(verdicts: list[Mapping[str, Any]], others: list[Mapping[str, Any]]) -> bool:
    keys = ("decision", "tier", "policy", "rule", "dry_run")
    return [[v.get(k) for k in keys] for v in verdicts] == [
        [v.get(k) for k in keys] for v in others
    ]


def _verdict_lines(verdicts: list[Mapping[str, Any]]) -> list[str]:
    lines = []
    for verdict in verdicts:
        port = _column(verdict["port"])
        text = _verdict(verdict)
        shadow = verdict["dry_run"]
        if shadow is not None and shadow != {k: verdict[k] for k in shadow}:
            text += f"  (dry-run: would be {_verdict(shadow)})"
        lines.append(f"    {port:<16} {text}")
    return lines


def _rule_ports(rule: Mapping[str, Any]) -> str:
    named = [*map(str, rule["ports"] or ()), *rule.get("port_ranges", ())]
    text = "any port" if rule["ports"] is None else "ports " + ",".join(named)
    excepted = [*map(str, rule.get("except_ports", ())), *rule.get("except_port_ranges", ())]
    if excepted:
        text += " except " + ",".join(excepted)
    if rule.get("networks") is not None:
        text += f" from {rule['networks']}"
    return text


def _column(port: int | str) -> str:
    if port == "other":
        return "other ports"
    return f"ports {port}" if isinstance(port, str) else f"port {port}"


def _address(address: Mapping[str, Any]) -> str:
    example = address.get("example")
    return str(address["group"]) + ("" if example is None else f" (such as {example})")


def _peer(peer: Mapping[str, Any]) -> str:
    try:
        return ClassKind(peer["class"]).describe(peer["name"])
    except ValueError:  # a class a newer server lists and this client does not know
        return f"{peer['class']} {peer['name']}"


def _policy(policy: Mapping[str, Any]) -> str:
    if policy["kind"] == "AuthorizationPolicy":
        what = f"namespace  AuthorizationPolicy {policy['namespace']}/{policy['name']} "
        what += f"({str(policy['action']).upper()})"
        if policy.get("scope") == "Mesh":
            what += " [mesh-wide]"
        if policy.get("target_ports"):
            what += " on ports " + ",".join(map(str, policy["target_ports"]))
    else:
        what = f"{policy['tier']:<10} ClusterAuthorizationPolicy {policy['name']}, "
        what += f"priority {policy['priority']}"
    flags = " [dry-run]" if policy["dry_run"] else ""
    return what + flags + (" [SHADOWED: can never decide]" if policy["shadowed"] else "")


def _source(source: Mapping[str, Any] | None) -> str:
    return "an unknown source" if source is None else str(Origin.parse(source))


def _verdict(verdict: Mapping[str, Any]) -> str:
    answer = verdict["decision"]
    if verdict["policy"] is not None:
        return f"{answer} by {verdict['tier']} {verdict['policy']} rule {verdict['rule']}"
    if verdict["tier"] == "default":
        return f"{answer} by the default"
    return f"{answer}: no rule of the namespace's ALLOW policies matched"
