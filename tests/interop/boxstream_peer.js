#!/usr/bin/env node
// Independent box-stream peer for tests/interop/test_boxstream_interop.py.
// Reads one JSON object on stdin: {key, nonce, encode: [hex...], decode: hex}
// (all hex). Writes one JSON object: {encoded: hex (frames + goodbye, made by
// pull-box-stream), decoded: [hex...], decode_error: string|null}.
// Module resolution: NODE_PATH must point at the npm cache's node_modules.
'use strict'
const pull = require('pull-stream')
const boxes = require('pull-box-stream')

let input = ''
process.stdin.setEncoding('utf8')
process.stdin.on('data', d => { input += d })
process.stdin.on('end', () => {
  const job = JSON.parse(input)
  const key = Buffer.from(job.key, 'hex')
  const nonce = Buffer.from(job.nonce, 'hex')
  const result = {}
  pull(
    pull.values(job.encode.map(h => Buffer.from(h, 'hex'))),
    boxes.createBoxStream(key, nonce),
    pull.collect((err, frames) => {
      if (err) throw err
      result.encoded = Buffer.concat(frames).toString('hex')
      const wire = Buffer.from(job.decode, 'hex')
      const decoded = []
      pull(
        pull.values([wire]),
        boxes.createUnboxStream(key, nonce),
        pull.drain(b => { decoded.push(b.toString('hex')) }, err => {
          result.decoded = decoded
          result.decode_error = err ? String(err.message || err) : null
          process.stdout.write(JSON.stringify(result))
        })
      )
    })
  )
})
