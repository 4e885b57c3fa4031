-- The same GET for every request, with a rotating `Authorization: Bearer` header: each
-- thread starts at its own offset and moves to the next token on every request.
-- Defined in front of this file by bench/wrk_lua.py: tokens (strings), path (string).

function init(args)
  n = #tokens
  counter = (tid * 7919) % n
  reqs = {}
  for i = 1, n do
    reqs[i] = wrk.format("GET", path, {["Authorization"] = "Bearer " .. tokens[i]})
  end
end

function request()
  counter = counter + 1
  return reqs[(counter % n) + 1]
end
