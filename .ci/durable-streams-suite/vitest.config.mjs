// The suite's own tests wait on long-polls and SSE connections: the server under test runs
// with a short long-poll timeout (see ../durable-streams.sh), and each test gets 30 s.
import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["*.test.mjs"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    fileParallelism: false,
  },
})
