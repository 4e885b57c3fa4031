-- Every put_every-th request is PUT /task/{id}/status on one of the token owner's tasks; the
-- rest GET /tasks/mine. GETs and PUTs rotate through the tokens independently. For one token,
-- the m-th PUT goes to task m mod k and, on each pass over its k tasks, to the next status of
-- the cycle, so consecutive updates of a task change its status.
-- Defined in front of this file by bench/wrk_lua.py: tokens (strings), ids (one table of
-- task ids per token), put_every (integer).
local cycle = {"in-progress", "completed", "pending"}

function init(args)
  n = #tokens
  counter = (tid * 7919) % n
  put_counter = (tid * 7919 + 13) % n
  seq = tid
  gets = {}
  puts = {}
  pos = {}
  for i = 1, n do
    local auth = "Bearer " .. tokens[i]
    gets[i] = wrk.format("GET", "/tasks/mine", {["Authorization"] = auth})
    local put_headers = {["Authorization"] = auth, ["Content-Type"] = "application/json"}
    local list = {}
    for j, id in ipairs(ids[i]) do
      local by_status = {}
      for s, name in ipairs(cycle) do
        by_status[s] = wrk.format("PUT", "/task/" .. id .. "/status", put_headers,
                                  '{"status": "' .. name .. '"}')
      end
      list[j] = by_status
    end
    puts[i] = list
    pos[i] = 0
  end
end

function request()
  seq = seq + 1
  if seq % put_every == 0 then
    put_counter = put_counter + 1
    local t = (put_counter % n) + 1
    local list = puts[t]
    local m = pos[t]
    pos[t] = m + 1
    local k = #list
    local s = (math.floor(m / k) + tid) % 3 + 1
    return list[(m % k) + 1][s]
  end
  counter = counter + 1
  return gets[(counter % n) + 1]
end
