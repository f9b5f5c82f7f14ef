# Runs one seed twice with --verbose and requires identical trace= lines; a different
# seed must give a different trace. Usage: cmake -DSIM=<twinbft-sim> -P trace_determinism.cmake
if(NOT SIM)
  message(FATAL_ERROR "trace_determinism: pass -DSIM=<path to twinbft-sim>")
endif()

function(sim_trace seed out)
  execute_process(
    COMMAND ${SIM} --seed-start ${seed} --seeds 1 --replicas 4 --byzantine 1 --faults all --verbose
    OUTPUT_VARIABLE log
    RESULT_VARIABLE rc)
  string(REGEX MATCH "(^|\n)trace=([0-9a-f]+)\n" hit "${log}")
  if(NOT hit)
    message(FATAL_ERROR "trace_determinism: seed ${seed} printed no trace= line (exit ${rc})")
  endif()
  set(${out} "${CMAKE_MATCH_2}" PARENT_SCOPE)
endfunction()

sim_trace(11 first)
sim_trace(11 second)
sim_trace(12 other)
if(NOT first STREQUAL second)
  message(FATAL_ERROR "trace_determinism: seed 11 gave two traces:\n  ${first}\n  ${second}")
endif()
if(first STREQUAL other)
  message(FATAL_ERROR "trace_determinism: seeds 11 and 12 gave the same trace ${first}")
endif()
message(STATUS "trace_determinism: seed 11 -> ${first} twice; seed 12 -> ${other}")
