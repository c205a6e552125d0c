/** Constants shared by bench/fanout.ts and its client process (bench/fanout-client.ts). */

export const FANOUT_QUERY = 'subscription { account { id name players { level score } } }';
/** Scores written by the bench are SCORE_BASE + seq; the demo data's scores are below 1,000,003. */
export const SCORE_BASE = 1_000_000_000_000;
