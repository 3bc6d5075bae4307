// The judging of `{{name}}`, kept apart from the WIT glue in app.js so that `npm test`
// (node --test) runs it with plain Node.js.

// What to do with a wave, as the WIT `verdict`: `{tag: "roll-back", val: reason}`,
// `{tag: "wait", val: seconds}` or `{tag: "proceed"}`. A bad parameter throws an Error naming it.
export function decide(params, succeeded, failed, settledSeconds, soakSeconds, trapping) {
  for (const key of Object.keys(params)) {
    if (key !== "maxFailurePercent" && key !== "pollSeconds") {
      throw new Error(`unknown parameter ${JSON.stringify(key)}`);
    }
  }
  const maxFailure = params.maxFailurePercent ?? 5;
  if (!Number.isInteger(maxFailure) || maxFailure < 0 || maxFailure > 100) {
    throw new Error(`maxFailurePercent is ${JSON.stringify(maxFailure)}: it must be 0 to 100`);
  }
  const poll = params.pollSeconds ?? 5;
  if (!Number.isInteger(poll) || poll < 1) {
    throw new Error(`pollSeconds is ${JSON.stringify(poll)}: it must be at least 1`);
  }
  const finished = succeeded + failed;
  if (failed * 100 > maxFailure * Math.max(finished, 1)) {
    return { tag: "roll-back", val: `${failed} of ${finished} devices failed, more than ${maxFailure}%` };
  }
  if (trapping > 0) return { tag: "roll-back", val: `${trapping} devices report traps` };
  // An absent option arrives as undefined (or null).
  if (settledSeconds == null) return { tag: "wait", val: poll };
  if (settledSeconds < soakSeconds) return { tag: "wait", val: soakSeconds - settledSeconds };
  return { tag: "proceed" };
}
