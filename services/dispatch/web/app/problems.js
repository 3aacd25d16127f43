// The server's refusals (problem documents in English, for developers) told to the courier in
// plain words of the message table.
import { NetworkError } from "./api.js";
import { formatMoney } from "./format.js";
import { t } from "./messages.js";

// A job locked after wrong delivery codes (a 429 of its own problem type, saying until when):
// sending the same code again would not help. Any other 429 is the courier's rate: the step waits.
const CODE_LOCKED = "https://giao.vn/problems/delivery-code-locked";

export function codeLockout(error) {
  return error.status === 429 && error.problem?.type === CODE_LOCKED;
}

export function explain(error, action, job) {
  if (error instanceof NetworkError) return t("network_error");
  const { status, problem } = error;
  if (status === 401) return t("session_ended");
  if (status === 404) return t("not_found");
  if (status === 409) return action === "accept" || action === "decline" ? t("offer_gone") : t("step_conflict");
  if (codeLockout(error)) return t("too_many_attempts", { min: Math.max(1, Math.ceil((problem.retry_after_s ?? 60) / 60)) });
  if (status === 429) return t("rate_limited");
  // The courier is locked out of deliveries (wrong codes across jobs), or this job's code is
  // locked: both until operations clear it; a failed delivery can still be reported.
  if (status === 403 && action === "deliver") return t("deliveries_paused");
  if (status === 423) return t("code_held");
  if (status === 422 && action === "deliver") {
    const field = problem.errors?.[0]?.loc?.at(-1);
    if (field === "delivery_code" && Number.isInteger(problem.attempts_left)) {
      return problem.attempts_left > 0 ? t("wrong_code", { n: problem.attempts_left }) : t("wrong_code_locked");
    }
    if (field === "cod_collected_vnd" && job) return t("cod_must_equal", { amount: formatMoney(job.cod_amount_vnd) });
  }
  if (status >= 500) return t("server_busy");
  return t("invalid_input");
}
