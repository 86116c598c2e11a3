#!/usr/bin/env python3
"""Import cycles between sibling modules inside each crate of the workspace.

A reference from module `a::b::x` to `a::c::y` (by `use crate::...`, `crate::...::` in code, or
`super::`) is an edge `a::b -> a::c` between the two siblings under their common parent. Names
re-exported at a module (`pub use inner::{Item}` in lib.rs or mod.rs) resolve to the module that
defines them, so a cycle hidden behind `use crate::Item` is still seen. References to an ancestor
or a descendant are not sibling edges. Prints each strongly connected component of more than one
module, with one reference per edge; exits 1 if there is any.

    python3 scripts/module_cycles.py            # every crate of the workspace
    python3 scripts/module_cycles.py model/src  # one crate
"""

import re
import sys
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def module_of(src: Path, f: Path) -> tuple:
    rel = f.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("lib", "main", "mod"):
        parts = parts[:-1]
    if parts and parts[0] == "bin":
        return ("#bin",) + tuple(parts[1:])
    return tuple(parts)


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def use_paths(text: str):
    """Expands every `use` tree into full paths (lists of segments)."""
    for m in re.finditer(r"\buse\s+([^;]+);", text):
        yield from expand(m.group(1).replace("\n", " ").strip())


def expand(tree: str, prefix=()):
    tree = tree.strip()
    if not tree:
        return
    depth = 0
    # Split a top-level `{...}` group.
    brace = tree.find("{")
    if brace < 0:
        path = [p.strip() for p in tree.split(" as ")[0].split("::") if p.strip()]
        yield list(prefix) + path
        return
    head = [p.strip() for p in tree[:brace].split("::") if p.strip()]
    inner = tree[brace + 1 : tree.rfind("}")]
    parts, cur = [], ""
    for ch in inner:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    for p in parts:
        if p.strip() == "self":
            yield list(prefix) + head
        else:
            yield from expand(p, tuple(list(prefix) + head))


def analyse(src: Path) -> int:
    files = sorted(src.rglob("*.rs"))
    modules = {module_of(src, f): f for f in files}
    texts = {m: strip_comments(f.read_text()) for m, f in modules.items()}

    # Item re-exports: (module, item) -> defining module.
    reexport = {}
    for m, t in texts.items():
        for um in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", t):
            for path in expand(um.group(1).replace("\n", " ")):
                target = resolve_prefix(m, path)
                if target is None:
                    continue
                mod, rest = longest_module(modules, target)
                if rest:
                    reexport[(m, rest[-1])] = mod

    edges = {}
    for m, t in texts.items():
        refs = set()
        for path in use_paths(t):
            refs.add(tuple(path))
        for cm in re.finditer(r"\b((?:crate|super)(?:::" + IDENT + r")+)", t):
            refs.add(tuple(cm.group(1).split("::")))
        for path in refs:
            target = resolve_prefix(m, list(path))
            if target is None:
                continue
            mod, rest = longest_module(modules, target)
            if rest and (mod, rest[0]) in reexport:
                mod = reexport[(mod, rest[0])]
            add_edge(edges, m, mod, "::".join(path))

    cycles = 0
    for comp in sccs(edges):
        if len(comp) < 2:
            continue
        cycles += 1
        names = sorted("::".join(c) or "crate" for c in comp)
        print(f"{src}: cycle between {', '.join(names)}")
        for a in sorted(comp):
            for b, why in sorted(edges.get(a, {}).items()):
                if b in comp:
                    print(f"    {'::'.join(a)} -> {'::'.join(b)}  ({why})")
    return cycles


def resolve_prefix(m: tuple, path: list):
    if not path:
        return None
    if path[0] == "crate":
        return tuple(path[1:])
    if path[0] in ("super", "self"):
        base = list(m)
        while path and path[0] in ("super", "self"):
            if path[0] == "super":
                if not base:
                    return None
                base.pop()
            path = path[1:]
        return tuple(base + path)
    return None


def longest_module(modules, target: tuple):
    for n in range(len(target), -1, -1):
        if target[:n] in modules:
            return target[:n], target[n:]
    return (), target


def add_edge(edges, a: tuple, b: tuple, why: str):
    # The edge between the two siblings under their common parent.
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    if n == len(a) or n == len(b):
        return  # ancestor or descendant
    sa, sb = a[: n + 1], b[: n + 1]
    edges.setdefault(sa, {}).setdefault(sb, why)


def sccs(edges):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]
    nodes = set(edges) | {b for d in edges.values() for b in d}

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            out.append(comp)

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def main():
    root = Path(__file__).resolve().parent.parent
    dirs = [Path(a) for a in sys.argv[1:]] or sorted(
        p.parent / "src" for p in root.glob("*/Cargo.toml") if (p.parent / "src").is_dir()
    )
    total = sum(analyse(d) for d in dirs)
    if total == 0:
        print(f"no import cycle inside {len(dirs)} crate(s)")
    sys.exit(1 if total else 0)


if __name__ == "__main__":
    main()
