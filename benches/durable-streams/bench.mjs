// Durable Streams appends through the protocol: appends/s and p50/p99 latency at 1 and 64
// connections, for `cairn serve` and, in the same run, the reference Node server
// (@durable-streams/server, pinned in package.json) in its file-backed mode.
//
// Each connection appends to a stream of its own (an agent run each), one request at a time,
// a small text/plain body per append, for --seconds after a short warm-up; an append counts once
// it is answered (cairn answers after fdatasync; the reference fdatasyncs its segment file on
// every append too, concurrent appends to one file sharing one in-flight fdatasync).
//
// Usage (from this directory, after `npm ci`):
//   node bench.mjs --cairn ../../target/release/cairn [--seconds 5] [--conns 1,64] [--client node|wrk] [--json out.json]
// Each row also reports CPU per append: the server process's (all threads, from /proc) and the
// load generator's. With --client wrk the appends are sent by wrk (which must be installed)
// instead of this process's fetch, whose own CPU per request otherwise bounds both servers.
// Everything runs on loopback; both servers use scratch directories that are removed after.

import { spawn } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir, loadavg, cpus } from "node:os"
import { join } from "node:path"

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => (a.startsWith("--") ? [...pairs, [a.slice(2), all[i + 1]]] : pairs), []),
)
const CAIRN = args.cairn
if (!CAIRN) throw new Error("--cairn PATH (the cairn binary) is required")
const SECONDS = Number(args.seconds ?? 5)
const WARMUP_SECONDS = 1
const CONNS = (args.conns ?? "1,64").split(",").map(Number)
const BODY = "x".repeat(100)
// The load generator: "node" (this process's fetch, the default) or "wrk" (see runWrk).
const CLIENT = args.client ?? "node"

// Node's fetch keeps connections alive, with no bound on connections per origin: each
// worker below holds one.

function startProcess(cmd, argv, env = {}) {
  const child = spawn(cmd, argv, { stdio: ["ignore", "pipe", "ignore"], env: { ...process.env, ...env } })
  return new Promise((resolve, reject) => {
    let out = ""
    child.stdout.on("data", (chunk) => {
      out += chunk
      const m = out.match(/(?:listening on |URL )(http:\/\/[^\s]+)/)
      if (m) resolve({ child, url: m[1] })
    })
    child.on("exit", (code) => reject(new Error(`${cmd} exited (${code}) before printing its address`)))
  })
}

async function startCairn(dir) {
  return startProcess(CAIRN, ["--data", dir, "serve", "--listen", "127.0.0.1:0"])
}

async function startReference(dir) {
  const script = `
    import { DurableStreamTestServer } from "@durable-streams/server"
    const server = new DurableStreamTestServer({ port: 0, host: "127.0.0.1", dataDir: process.env.DATA, compression: false })
    const url = await server.start()
    console.log("URL " + url)
  `
  return startProcess(process.execPath, ["--input-type=module", "-e", script], { DATA: dir })
}

// CPU seconds (user + system, all threads) a process has used so far, from /proc (Linux).
function processCpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return (Number(fields[11]) + Number(fields[12])) / 100 // utime, stime in clock ticks (USER_HZ 100)
}

// This process's CPU seconds (the load generator).
function ownCpuSeconds() {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1e6
}

// CPU seconds used by this process's waited-for children (the wrk load generator).
function childrenCpuSeconds() {
  const stat = readFileSync("/proc/self/stat", "utf8")
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return (Number(fields[13]) + Number(fields[14])) / 100 // cutime, cstime
}

async function createStreams(base, conns, label) {
  const streams = Array.from({ length: conns }, (_, i) => `${base}/v1/stream/bench/${label}-${conns}-${i}`)
  for (const url of streams) {
    const r = await fetch(url, { method: "PUT", headers: { "content-type": "text/plain" } })
    if (r.status !== 201) throw new Error(`PUT ${url}: ${r.status}`)
  }
  return streams
}

// --client wrk: the same appends sent by wrk (C, far cheaper per request than Node's fetch), `conns`
// connections on 2 threads, each request to the next of the `conns` streams in turn; a short
// warm-up run first. Latencies are wrk's (its p50 and p99 over the run).
async function runWrk(base, conns, label, pid) {
  const streams = await createStreams(base, conns, label)
  const dir = mkdtempSync(join(tmpdir(), "ds-bench-wrk-"))
  const script = join(dir, "append.lua")
  const paths = streams.map((u) => JSON.stringify(new URL(u).pathname)).join(", ")
  writeFileSync(
    script,
    `local paths = { ${paths} }\nlocal n = 0\nlocal body = string.rep("x", ${BODY.length})\n` +
      `request = function()\n  n = n + 1\n  return wrk.format("POST", paths[(n % #paths) + 1], {["content-type"] = "text/plain"}, body)\nend\n` +
      `response = function(status)\n  if status ~= 200 and status ~= 204 then error("POST answered " .. status) end\nend\n`,
  )
  const wrk = (seconds) =>
    new Promise((resolve, reject) => {
      const threads = String(Math.min(conns, 2))
      const child = spawn("wrk", ["-t", threads, "-c", String(conns), "-d", `${seconds}s`, "--latency", "-s", script, base], {
        stdio: ["ignore", "pipe", "inherit"],
      })
      let out = ""
      child.stdout.on("data", (chunk) => (out += chunk))
      child.on("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`wrk exited (${code})`))))
    })
  try {
    await wrk(WARMUP_SECONDS)
    const [server0, client0] = [processCpuSeconds(pid), childrenCpuSeconds()]
    const out = await wrk(SECONDS)
    const [server1, client1] = [processCpuSeconds(pid), childrenCpuSeconds()]
    const appends = Number(out.match(/(\d+) requests in/)[1])
    if (/Non-2xx/.test(out)) throw new Error(`wrk saw failed appends:\n${out}`)
    const ms = (p) => {
      const m = out.match(new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s)`, "m"))
      return Number(m[1]) * { us: 0.001, ms: 1, s: 1000 }[m[2]]
    }
    return {
      server: label,
      connections: conns,
      client: "wrk",
      appends,
      appends_per_s: Number(out.match(/Requests\/sec:\s+([\d.]+)/)[1]),
      p50_ms: ms(50),
      p99_ms: ms(99),
      server_cpu_us: ((server1 - server0) * 1e6) / appends,
      client_cpu_us: ((client1 - client0) * 1e6) / appends,
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

async function run(base, conns, label, pid) {
  if (CLIENT === "wrk") return runWrk(base, conns, label, pid)
  const streams = await createStreams(base, conns, label)
  const latencies = []
  let measuring = false
  let stop = false
  const worker = async (url) => {
    while (!stop) {
      const started = performance.now()
      const r = await fetch(url, { method: "POST", headers: { "content-type": "text/plain" }, body: BODY })
      await r.arrayBuffer()
      if (r.status !== 204 && r.status !== 200) throw new Error(`POST ${url}: ${r.status}`)
      if (measuring) latencies.push(performance.now() - started)
    }
  }
  const workers = streams.map(worker)
  await new Promise((resolve) => setTimeout(resolve, WARMUP_SECONDS * 1000))
  measuring = true
  const t0 = performance.now()
  const [server0, client0] = [processCpuSeconds(pid), ownCpuSeconds()]
  await new Promise((resolve) => setTimeout(resolve, SECONDS * 1000))
  measuring = false
  const [server1, client1] = [processCpuSeconds(pid), ownCpuSeconds()]
  const elapsed = (performance.now() - t0) / 1000
  stop = true
  await Promise.all(workers)
  latencies.sort((a, b) => a - b)
  const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))]
  const perAppend = (seconds) => (seconds * 1e6) / latencies.length
  return {
    server: label,
    connections: conns,
    client: "node",
    appends: latencies.length,
    appends_per_s: latencies.length / elapsed,
    p50_ms: pct(50),
    p99_ms: pct(99),
    // CPU per append (µs): the server process's (all threads), and this load generator's.
    server_cpu_us: perAppend(server1 - server0),
    client_cpu_us: perAppend(client1 - client0),
  }
}

const results = []
const load = loadavg()
for (const [label, start] of [["cairn", startCairn], ["reference", startReference]]) {
  const dir = mkdtempSync(join(tmpdir(), `ds-bench-${label}-`))
  const { child, url } = await start(dir)
  try {
    for (const conns of CONNS) {
      const r = await run(url, conns, label, child.pid)
      results.push(r)
      console.log(
        `${label.padEnd(9)} ${String(conns).padStart(3)} conns: ${r.appends_per_s.toFixed(0).padStart(7)} appends/s  ` +
          `p50 ${r.p50_ms.toFixed(2)} ms  p99 ${r.p99_ms.toFixed(2)} ms  (${r.appends} appends)  ` +
          `CPU per append: server ${r.server_cpu_us.toFixed(1)} µs, client ${r.client_cpu_us.toFixed(1)} µs`,
      )
    }
  } finally {
    child.kill("SIGTERM")
    await new Promise((resolve) => child.once("exit", resolve))
    rmSync(dir, { recursive: true, force: true })
  }
}
const loadEnd = loadavg()
const report = { client: CLIENT, seconds: SECONDS, body_bytes: BODY.length, cpus: cpus().length, load_average_at_start: load, load_average_at_end: loadEnd, results }
for (const conns of CONNS) {
  const c = results.find((r) => r.server === "cairn" && r.connections === conns)
  const ref = results.find((r) => r.server === "reference" && r.connections === conns)
  console.log(`${conns} conns: cairn ${(c.appends_per_s / ref.appends_per_s).toFixed(2)}x the reference's appends/s`)
}
const loads = (l) => l.map((x) => x.toFixed(1)).join(" ")
console.log(`load average at start: ${loads(load)}, at end: ${loads(loadEnd)} on ${cpus().length} cpus`)
if (args.json) writeFileSync(args.json, JSON.stringify(report, null, 2) + "\n")
