#!/usr/bin/env node
// An independent Canopy client for tests/interop/test_js_client_live_node.py: dials a LIVE
// node over WebSocket, runs SHS1 as the client with shs1-crypto's stateless functions,
// opens the node's box-stream with pull-box-stream and decodes its first message (Hello:
// u32 BE length, then msgpack [1, version, name, [addresses]]) with a small decoder below.
// No Canopy code is used.
//
// Usage: js_node_client.js WS_URL SERVER_PUBLIC_KEY_HEX
// Env:   CANOPY_NETWORK_KEY (32 bytes hex), CANOPY_CLIENT_SECRET (Ed25519 secret key, hex:
//        64-byte libsodium form seed||pk, or the 32-byte seed). Secrets travel by env so
//        they never appear in a process listing.
// Output (stdout, one JSON line): success
//   {"handshake": "ok", "hello": {"name", "version", "addresses"}}, exit 0; failure
//   {"handshake": "failed", "stage": "connect|msg2|msg4|boxstream|hello", "error"}, exit 1.
// Module resolution: NODE_PATH must point at the npm cache's node_modules.
'use strict'
const sodium = require('chloride')
const shs = require('shs1-crypto')
const boxes = require('pull-box-stream')
const pull = require('pull-stream')
const WebSocket = require('ws')

const TIMEOUT_MS = Number(process.env.CANOPY_JS_CLIENT_TIMEOUT_MS || 10000)
let stage = 'connect'

function fail (err) {
  const error = err && err.message ? err.message : String(err)
  process.stdout.write(JSON.stringify({ handshake: 'failed', stage, error }) + '\n')
  process.exit(1)
}

function hexArg (value, what, sizes) {
  if (typeof value !== 'string' || !/^([0-9a-f]{2})+$/i.test(value)) {
    throw new Error(`${what}: expected hex`)
  }
  const buf = Buffer.from(value, 'hex')
  if (!sizes.includes(buf.length)) throw new Error(`${what}: expected ${sizes} bytes`)
  return buf
}

// The WebSocket as one ordered byte stream: message boundaries carry no meaning.
class BytePipe {
  constructor (ws) {
    this.buf = Buffer.alloc(0)
    this.ended = null // Error once the socket is closed or failed
    this.wake = null
    ws.on('message', (data, isBinary) => {
      if (!isBinary) return this.end(new Error('text WebSocket message'))
      this.buf = Buffer.concat([this.buf, data])
      this.notify()
    })
    ws.on('close', (code) => this.end(new Error(`connection closed (code ${code})`)))
    ws.on('error', (err) => this.end(err))
  }

  end (err) {
    if (!this.ended) this.ended = err
    this.notify()
  }

  notify () {
    const wake = this.wake
    this.wake = null
    if (wake) wake()
  }

  waitFor (pred) {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (pred()) return resolve()
        if (this.ended) return reject(this.ended)
        this.wake = check
      }
      check()
    })
  }

  // Exactly n bytes (a handshake message).
  async read (n) {
    await this.waitFor(() => this.buf.length >= n)
    const out = this.buf.slice(0, n)
    this.buf = this.buf.slice(n)
    return out
  }

  // Whatever is buffered (at least one byte), or null once the socket has ended.
  async readSome () {
    try {
      await this.waitFor(() => this.buf.length > 0)
    } catch (err) {
      return null
    }
    const out = this.buf
    this.buf = Buffer.alloc(0)
    return out
  }
}

// Just enough msgpack for a Hello: arrays, non-negative ints, strings, nil, booleans.
function decodeMsgpack (buf) {
  let pos = 0
  const need = (n) => {
    if (pos + n > buf.length) throw new Error('msgpack: truncated')
  }
  const uint = (n) => {
    need(n)
    const v = buf.readUIntBE(pos, n)
    pos += n
    return v
  }
  const str = (n) => {
    need(n)
    const s = buf.toString('utf8', pos, pos + n)
    pos += n
    return s
  }
  const array = (n) => {
    const out = []
    for (let i = 0; i < n; i++) out.push(value())
    return out
  }
  function value () {
    const b = uint(1)
    if (b <= 0x7f) return b
    if (b >= 0x90 && b <= 0x9f) return array(b & 0x0f)
    if (b >= 0xa0 && b <= 0xbf) return str(b & 0x1f)
    switch (b) {
      case 0xc0: return null
      case 0xc2: return false
      case 0xc3: return true
      case 0xcc: return uint(1)
      case 0xcd: return uint(2)
      case 0xce: return uint(4)
      case 0xd9: return str(uint(1))
      case 0xda: return str(uint(2))
      case 0xdb: return str(uint(4))
      case 0xdc: return array(uint(2))
      case 0xdd: return array(uint(4))
      default: throw new Error(`msgpack: unsupported type byte 0x${b.toString(16)}`)
    }
  }
  const out = value()
  if (pos !== buf.length) throw new Error('msgpack: trailing bytes')
  return out
}

function decodeHello (body) {
  const msg = decodeMsgpack(body)
  if (!Array.isArray(msg) || msg.length !== 4 || msg[0] !== 1) {
    throw new Error(`first message is not a Hello: ${JSON.stringify(msg)}`)
  }
  const [, version, name, addresses] = msg
  if (!Number.isInteger(version) || typeof name !== 'string' || !Array.isArray(addresses)) {
    throw new Error(`malformed Hello: ${JSON.stringify(msg)}`)
  }
  return { name, version, addresses }
}

async function main () {
  const [url, serverPkHex] = process.argv.slice(2)
  if (!url || !serverPkHex) throw new Error('usage: js_node_client.js WS_URL SERVER_PK_HEX')
  const serverPk = hexArg(serverPkHex, 'server public key', [32])
  const network = hexArg(process.env.CANOPY_NETWORK_KEY, 'CANOPY_NETWORK_KEY', [32])
  const secret = hexArg(process.env.CANOPY_CLIENT_SECRET, 'CANOPY_CLIENT_SECRET', [32, 64])
  const longterm = sodium.crypto_sign_seed_keypair(secret.slice(0, 32))
  if (secret.length === 64 && !secret.equals(Buffer.from(longterm.secretKey))) {
    throw new Error('CANOPY_CLIENT_SECRET: public half does not match the seed')
  }
  const ephemeral = sodium.crypto_box_keypair() // X25519, fresh CSPRNG output

  const ws = new WebSocket(url, { perMessageDeflate: false })
  const pipe = new BytePipe(ws)
  await new Promise((resolve, reject) => {
    ws.once('open', resolve)
    ws.once('error', reject)
  })

  const state = {
    network_identifier: network,
    client_longterm_sk: Buffer.from(longterm.secretKey),
    client_longterm_pk: Buffer.from(longterm.publicKey),
    client_ephemeral_sk: Buffer.from(ephemeral.secretKey),
    client_ephemeral_pk: Buffer.from(ephemeral.publicKey),
    server_longterm_pk: serverPk
  }
  stage = 'msg2'
  ws.send(shs.createMsg1(state))
  if (!shs.verifyMsg2(state, await pipe.read(64))) throw new Error('msg2 failed to verify')
  ws.send(shs.createMsg3(state))
  stage = 'msg4'
  const msg4 = await pipe.read(80).catch((err) => {
    throw new Error(`no msg4: ${err.message}`)
  })
  if (!shs.verifyMsg4(state, msg4)) throw new Error('msg4 failed to verify')
  const keys = shs.clientOutcome(state)

  // The node's box-stream, decoded by pull-box-stream; the Hello is reassembled above it.
  stage = 'boxstream'
  const hello = await new Promise((resolve, reject) => {
    let plain = Buffer.alloc(0)
    let done = false
    const source = (abort, cb) => {
      if (abort) return cb(abort)
      pipe.readSome().then((chunk) => cb(chunk === null ? true : null, chunk))
    }
    pull(
      source,
      boxes.createUnboxStream(keys.decryption_key, keys.decryption_nonce),
      pull.drain((body) => {
        plain = Buffer.concat([plain, body])
        if (plain.length < 4 || plain.length < 4 + plain.readUInt32BE(0)) return true
        stage = 'hello'
        try {
          resolve(decodeHello(plain.slice(4, 4 + plain.readUInt32BE(0))))
        } catch (err) {
          reject(err)
        }
        done = true
        return false // enough: abort the stream
      }, (err) => {
        if (!done) reject(err && err !== true ? err : new Error('stream ended before a Hello'))
      })
    )
  })

  // Leave politely: our (empty) box-stream's goodbye, then close the socket.
  const goodbye = await new Promise((resolve, reject) => {
    pull(
      pull.empty(),
      boxes.createBoxStream(keys.encryption_key, keys.encryption_nonce),
      pull.collect((err, frames) => (err ? reject(err) : resolve(Buffer.concat(frames))))
    )
  })
  await new Promise((resolve) => ws.send(goodbye, resolve))
  await new Promise((resolve) => {
    ws.once('close', resolve)
    ws.close(1000)
    setTimeout(resolve, 1000)
  })
  process.stdout.write(JSON.stringify({ handshake: 'ok', hello }) + '\n')
  process.exit(0)
}

setTimeout(() => fail(new Error(`timed out after ${TIMEOUT_MS} ms`)), TIMEOUT_MS)
main().catch(fail)
