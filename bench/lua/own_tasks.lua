-- GET /task/{id}: per token, the ids of the tasks assigned to that token's owner. Each
-- request moves to the next token; each token walks through its own ids.
-- Defined in front of this file by bench/wrk_lua.py: tokens (strings), ids (one table of
-- task ids per token).

function init(args)
  n = #tokens
  counter = (tid * 7919) % n
  reqs = {}
  pos = {}
  for i = 1, n do
    local headers = {["Authorization"] = "Bearer " .. tokens[i]}
    local list = {}
    for j, id in ipairs(ids[i]) do
      list[j] = wrk.format("GET", "/task/" .. id, headers)
    end
    reqs[i] = list
    pos[i] = (tid * 7919) % #list
  end
end

function request()
  counter = counter + 1
  local t = (counter % n) + 1
  local list = reqs[t]
  pos[t] = pos[t] + 1
  return list[(pos[t] % #list) + 1]
end
