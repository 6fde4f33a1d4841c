-- wrk-pipeline.lua: make wrk pipeline HTTP/1.1 requests (wrk's own
-- pipeline.lua idea), for `harness clients` and `harness bench --workload pipelined`.
--
--   wrk -t1 -c50 -d10s -s scripts/wrk-pipeline.lua http://127.0.0.1:PORT/plaintext -- 16 /plaintext
--
-- Script arguments (after `--`): DEPTH (default 16) and PATH (default
-- /plaintext). Each connection writes DEPTH GET requests back to back in one
-- write, then waits for all DEPTH responses before the next write; wrk counts
-- every response as one request. The same thing as `loadgen --pipeline DEPTH`.

local depth = 16
local path = "/plaintext"
local batch

init = function(args)
   if args[1] ~= nil then
      depth = tonumber(args[1])
      if depth == nil or depth < 1 or depth ~= math.floor(depth) then
         error("wrk-pipeline.lua: DEPTH must be a whole number >= 1, got '" .. tostring(args[1]) .. "'")
      end
   end
   if args[2] ~= nil then
      path = args[2]
   end
   local r = {}
   for i = 1, depth do
      r[i] = wrk.format(nil, path)
   end
   batch = table.concat(r)
end

request = function()
   return batch
end
