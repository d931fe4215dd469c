# Progress for the long steps of tests/demo.sh and the install scripts (sourced, not run).
#
#   with_progress LABEL TYPICAL TOTAL PATTERN LOG -- COMMAND...
#
# Runs COMMAND with its output in LOG and, while it runs, prints one line every
# PROGRESS_INTERVAL seconds (default 15): the time spent, how many lines of LOG match PATTERN
# (an extended regex counting units of work: packages unpacked, crates compiled) out of
# TOTAL, and an estimate of what is left, from the rate so far once a tenth is done, else
# from TYPICAL (the step's seconds measured on 2 idle cores). One line each time, not a redrawn
# bar, so that a log of the run reads as well as the terminal. Returns COMMAND's status; the
# caller shows LOG's tail when it failed.

# shellcheck shell=bash

# "1m05s" for 65.
progress_duration() {
    local s=$1
    if ((s >= 60)); then
        printf '%dm%02ds' $((s / 60)) $((s % 60))
    else
        printf '%ds' "$s"
    fi
}

with_progress() {
    local label=$1 typical=$2 total=$3 pattern=$4 log=$5
    shift 5
    [[ $1 == -- ]] && shift
    local interval=${PROGRESS_INTERVAL:-15} start=$SECONDS pid status=0 next finished elapsed left
    "$@" >"$log" 2>&1 &
    pid=$!
    next=$((SECONDS + interval))
    # Polls once a second so that a short step ends at once; prints only every interval.
    while kill -0 "$pid" 2>/dev/null; do
        sleep 1
        ((SECONDS >= next)) || continue
        next=$((SECONDS + interval))
        elapsed=$((SECONDS - start))
        finished=$(grep -Ec "$pattern" "$log" 2>/dev/null || true)
        # The rate says something once a tenth is done; before, a step that has little to do
        # (a release build of fleetcert alone) would extrapolate its first slow unit.
        if ((total > 0 && finished * 10 >= total && finished < total)); then
            left=$((elapsed * (total - finished) / finished))
            printf '    %s: %s so far, %d of %d done, about %s left\n' "$label" \
                "$(progress_duration "$elapsed")" "$finished" "$total" "$(progress_duration "$left")"
        elif ((elapsed < typical)); then
            printf '    %s: %s so far, about %s left (typically %s)\n' "$label" \
                "$(progress_duration "$elapsed")" "$(progress_duration $((typical - elapsed)))" \
                "$(progress_duration "$typical")"
        else
            printf '    %s: %s so far, longer than the usual %s (a busy machine); still working\n' \
                "$label" "$(progress_duration "$elapsed")" "$(progress_duration "$typical")"
        fi
    done
    wait "$pid" || status=$?
    printf '    %s: done in %s\n' "$label" "$(progress_duration $((SECONDS - start)))"
    return "$status"
}
