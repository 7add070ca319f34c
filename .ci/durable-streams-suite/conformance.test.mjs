// The public Durable Streams conformance suite, run whole against the cairn server at
// CAIRN_URL (started by ../durable-streams.sh).
import { runConformanceTests } from "@durable-streams/server-conformance-tests"

const baseUrl = process.env.CAIRN_URL
if (!baseUrl) throw new Error("CAIRN_URL must name the cairn server under test")

runConformanceTests({ baseUrl, longPollTimeoutMs: 2_000 })
