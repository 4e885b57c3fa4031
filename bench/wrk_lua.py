"""wrk's Lua scripts: bench/lua/head.lua + the values a script needs + bench/lua/<script> +
bench/lua/tail.lua, written to one file for `wrk -s`.

One Lua state per wrk thread. head.lua numbers the threads; each script (get_rotating.lua,
own_tasks.lua, mix.lua) defines init() and request(); tail.lua counts every status and
prints the BENCH_JSON line that wrk_runs.run_wrk reads. The values (tokens, ids, ...) are
written as `local NAME = VALUE` lines between head.lua and the script.
"""

from __future__ import annotations

from pathlib import Path

LUA_DIR = Path(__file__).resolve().parent / "lua"


def lua_value(value: object) -> str:
    """A Lua literal: strings quoted (they must not contain quotes or backslashes), ints as
    they are, lists and tuples as tables."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        return "{" + ", ".join(lua_value(v) for v in value) + "}"
    raise TypeError(f"no Lua literal for {type(value).__name__}")


def write_lua(dest: Path, script: str, /, **values: object) -> None:
    """A full script for wrk: head.lua, the values, lua/<script>, tail.lua."""
    defs = "".join(f"local {name} = {lua_value(value)}\n" for name, value in values.items())
    parts = [(LUA_DIR / "head.lua").read_text(), defs, (LUA_DIR / script).read_text(),
             (LUA_DIR / "tail.lua").read_text()]
    dest.write_text("\n".join(parts))


def write_get_lua(dest: Path, url_path: str, tokens: list[str]) -> None:
    write_lua(dest, "get_rotating.lua", tokens=tokens, path=url_path)
