#!/usr/bin/env node
// Recompute every "full" case of docs/vectors/shs1.json with shs1-crypto (an
// independent JS implementation) and print what it got, as JSON on stdout:
// [{name, msg1..msg4, client_keys, server_keys, verified: bool}]. The Python test
// compares that with the file. NODE_PATH must point at the npm cache's node_modules.
'use strict'
const fs = require('fs')
const sodium = require('chloride')
const shs = require('shs1-crypto')

const BASE = Buffer.concat([Buffer.from([9]), Buffer.alloc(31)])
const scalarmultBase = sk => sodium.crypto_scalarmult(sk, BASE)
const hex = b => Buffer.from(b).toString('hex')
const buf = h => Buffer.from(h, 'hex')
const keys = o => ({
  encrypt_key: hex(o.encryption_key),
  encrypt_nonce: hex(o.encryption_nonce),
  decrypt_key: hex(o.decryption_key),
  decrypt_nonce: hex(o.decryption_nonce)
})

const cases = JSON.parse(fs.readFileSync(process.argv[2], 'utf8')).cases
const out = []
for (const c of cases.filter(c => c.kind === 'full')) {
  const N = buf(c.network_keys[c.network_key_index])
  const client = sodium.crypto_sign_seed_keypair(buf(c.client_seed))
  const server = sodium.crypto_sign_seed_keypair(buf(c.server_seed))
  const cEph = buf(c.client_ephemeral_secret)
  const sEph = buf(c.server_ephemeral_secret)
  const cs = {
    network_identifier: N,
    client_longterm_sk: client.secretKey,
    client_longterm_pk: client.publicKey,
    client_ephemeral_sk: cEph,
    client_ephemeral_pk: scalarmultBase(cEph),
    server_longterm_pk: server.publicKey
  }
  const ss = {
    network_identifier: N,
    server_longterm_sk: server.secretKey,
    server_longterm_pk: server.publicKey,
    server_ephemeral_sk: sEph,
    server_ephemeral_pk: scalarmultBase(sEph)
  }
  const msg1 = shs.createMsg1(cs)
  let verified = shs.verifyMsg1(ss, msg1)
  const msg2 = shs.createMsg2(ss)
  verified = shs.verifyMsg2(cs, msg2) && verified
  const msg3 = shs.createMsg3(cs)
  verified = shs.verifyMsg3(ss, msg3) && verified
  const msg4 = shs.createMsg4(ss)
  verified = shs.verifyMsg4(cs, msg4) && verified
  out.push({
    name: c.name,
    msg1: hex(msg1),
    msg2: hex(msg2),
    msg3: hex(msg3),
    msg4: hex(msg4),
    client_keys: keys(shs.clientOutcome(cs)),
    server_keys: keys(shs.serverOutcome(ss)),
    verified: Boolean(verified)
  })
}
process.stdout.write(JSON.stringify(out))
