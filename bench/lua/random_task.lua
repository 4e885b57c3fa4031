-- GET /task/{id} with one token (a manager's, who may read every task), the id drawn at
-- random from `ids` on each request (each thread seeds its own generator).
-- Defined in front of this file by bench/wrk_lua.py: token (string), ids (task ids).

function init(args)
  math.randomseed(7919 * (tid + 1))
  local headers = {["Authorization"] = "Bearer " .. token}
  reqs = {}
  for i, id in ipairs(ids) do
    reqs[i] = wrk.format("GET", "/task/" .. id, headers)
  end
  n = #reqs
end

function request()
  return reqs[math.random(n)]
end
