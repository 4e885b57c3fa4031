-- GET /task/<id> with one manager token, ids first + (k * threads + tid) mod wrap for the k-th
-- request of thread tid: with wrap larger than the run, every id is asked once (all misses);
-- with wrap = the ids a previous run asked, every answer is a hit. Defined in front by
-- bench/wrk_lua.py: token (string), first, threads_n, wrap (numbers).

function init(args)
  k = 0
  auth = {["Authorization"] = "Bearer " .. token}
end

function request()
  local id = first + (k * threads_n + tid) % wrap
  k = k + 1
  return wrk.format("GET", "/task/" .. id, auth)
end
