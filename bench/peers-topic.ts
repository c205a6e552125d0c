/** The NOTIFY channel of `npm run bench:peers`: the trigger on account/player and PostGraphile's subscription. */
export const PEER_TOPIC = 'rowgate_bench_peer';
