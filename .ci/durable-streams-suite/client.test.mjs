// The protocol's TypeScript client (@durable-streams/client) against the cairn server at
// CAIRN_URL: append, read from an offset, live tail, resume.
import { DurableStream } from "@durable-streams/client"
import { expect, test } from "vitest"

const baseUrl = process.env.CAIRN_URL
if (!baseUrl) throw new Error("CAIRN_URL must name the cairn server under test")

test("the TypeScript client appends, reads from an offset, tails live and resumes", async () => {
  const url = `${baseUrl}/v1/stream/ts-client/${Date.now()}`
  const stream = await DurableStream.create({ url, contentType: "application/json" })
  await stream.append(JSON.stringify({ n: 1 }))
  await stream.append(JSON.stringify({ n: 2 }))

  const caughtUp = await stream.stream({ live: false })
  expect(await caughtUp.json()).toEqual([{ n: 1 }, { n: 2 }])
  expect(caughtUp.upToDate).toBe(true)
  const afterTwo = caughtUp.offset

  // Live tail from that offset: what is appended next arrives, and nothing from before.
  const live = await stream.stream({ offset: afterTwo, live: "long-poll" })
  const tailed = []
  const twoMore = new Promise((resolve) => {
    const unsubscribe = live.subscribeJson(async (batch) => {
      tailed.push(...batch.items)
      if (tailed.length >= 2) {
        unsubscribe()
        live.cancel()
        resolve()
      }
    })
  })
  await stream.append(JSON.stringify({ n: 3 }))
  await stream.append(JSON.stringify({ n: 4 }))
  await twoMore
  expect(tailed).toEqual([{ n: 3 }, { n: 4 }])

  // Resume from a saved offset: the reader picks up exactly where it stopped.
  const resumed = await stream.stream({ offset: afterTwo, live: false })
  expect(await resumed.json()).toEqual([{ n: 3 }, { n: 4 }])
  const atTail = await stream.stream({ offset: resumed.offset, live: false })
  expect(await atTail.json()).toEqual([])
  expect(atTail.upToDate).toBe(true)
})
