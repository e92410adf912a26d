"""agents: our registered agents and their parameters, from their declarations."""

from __future__ import annotations


def describe(provider: str) -> str:
    from agents import registry

    lines: list[str] = []
    for name in registry.names():
        try:
            agent = registry.load(name)
        except ImportError as exc:
            lines.append(f"ocf:{provider}:{name}  (cannot be imported: {exc})\n")
            continue
        lines.append(f"ocf:{provider}:{name}  {agent.shortdesc}")
        for param in agent.params:
            flags = [param.kind]
            flags += [word for word, on in (("required", param.required), ("secret", param.secret),
                                            ("reloadable", param.reloadable)) if on]
            if param.default is not None:
                flags.append(f"default {param.default_text()}")
            if param.choices:
                flags.append("one of " + "|".join(param.choices))
            if param.deprecated_for:
                flags.append(f"deprecated: use {param.deprecated_for}")
            lines.append(f"  {param.name:<22} {', '.join(flags)}: {param.shortdesc}")
        lines.append("")
    return "\n".join(lines) + ("\n" if lines else "")
