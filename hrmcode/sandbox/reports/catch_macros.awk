# hrmcode's strict-mode check of a C++ test translation unit, run on `g++ -E -dD` output before any
# of the solution's code runs: the solution's own headers may not #define or #undef a macro that
# Catch2's header defines (REQUIRE, TEST_CASE, ...) nor any CATCH_* configuration macro, which would
# let a header turn every assertion into a no-op. Prints each such macro and exits 1; else exits 0.
/^# [0-9]+ "/ { file = $3; gsub(/"/, "", file); sub(/^(\.\/)+/, "", file); next }
/^#(define|undef) / {
    name = $2; sub(/\(.*/, "", name)
    if (file == "test/catch.hpp") framework[name] = 1
    else if (file !~ /^\// && file !~ /^</ && file !~ /_test\.(cpp|cc)$/) own[name] = 1
}
END {
    bad = 0
    for (name in own) if ((name in framework) || name ~ /^(CATCH_|INTERNAL_CATCH)/) {
        print "hrmcode strict mode: the solution defines or undefines the test framework's macro " name
        bad = 1
    }
    exit bad
}
