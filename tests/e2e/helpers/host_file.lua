-- host_file(bytes): writes bytes to a fresh temporary host file and returns
-- its path (the caller removes it).
return function(bytes)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
  return path
end
