-- First part of every bench script for wrk (bench/wrk_lua.py puts it in front). One Lua
-- state per wrk thread; setup() runs in the main state and numbers the threads (`tid`).
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
