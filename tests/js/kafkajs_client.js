#!/usr/bin/env node
// kafkajs (the Node.js Kafka client) driven by tests/e2e/test_kafkajs.py.
//
// Reads one JSON request on stdin and prints one JSON result on stdout:
//
//   {"brokers": ["127.0.0.1:9093"],
//    "ssl": {"ca": "ca.pem", "cert": "client.crt", "key": "client.key"},   // file paths; or omitted
//    "sasl": {"mechanism": "scram-sha-512", "username": "u", "password": "p"}, // or omitted
//    "action": "produce" | "consume" | "admin",
//    "topic": "t",
//    "messages": [{"key": "k", "value": "v"}],   // produce
//    "groupId": "g", "count": 10,                // consume: read `count` messages in group `groupId`
//    "timeoutMs": 30000, "retries": 2}
//
//   -> {"ok": true, ...} or {"ok": false, "error": {"name", "type", "message", "retriable"}}
//
// kafkajs's own log goes to stderr (level WARN), so stdout carries only the result.
'use strict'

const fs = require('fs')
const { Kafka, Partitioners, logLevel } = require('kafkajs')

function readStdin() {
  return new Promise((resolve, reject) => {
    const chunks = []
    process.stdin.on('data', (c) => chunks.push(c))
    process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    process.stdin.on('error', reject)
  })
}

function sslOptions(ssl) {
  if (!ssl) return undefined
  const opts = {}
  if (ssl.ca) opts.ca = [fs.readFileSync(ssl.ca, 'utf8')]
  if (ssl.cert) opts.cert = fs.readFileSync(ssl.cert, 'utf8')
  if (ssl.key) opts.key = fs.readFileSync(ssl.key, 'utf8')
  return opts
}

function stderrLogger() {
  return ({ namespace, level, label, log }) => {
    const { message, ...extra } = log
    process.stderr.write(`[kafkajs ${label} ${namespace}] ${message} ${JSON.stringify(extra)}\n`)
  }
}

function withTimeout(promise, ms, what) {
  let timer
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`${what} timed out after ${ms} ms`), { name: 'Timeout' })), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

async function produce(kafka, req) {
  const producer = kafka.producer({ allowAutoTopicCreation: true, createPartitioner: Partitioners.DefaultPartitioner })
  await producer.connect()
  try {
    const metadata = await producer.send({
      topic: req.topic,
      acks: -1,
      messages: req.messages.map((m) => ({ key: m.key ?? null, value: m.value })),
    })
    return { records: metadata.map((r) => ({ partition: r.partition, baseOffset: r.baseOffset, errorCode: r.errorCode })) }
  } finally {
    await producer.disconnect()
  }
}

async function consume(kafka, req) {
  const consumer = kafka.consumer({ groupId: req.groupId, maxWaitTimeInMs: 200, retry: { retries: req.retries ?? 2 } })
  const messages = []
  await consumer.connect()
  try {
    await consumer.subscribe({ topics: [req.topic], fromBeginning: true })
    let done
    const finished = new Promise((resolve) => { done = resolve })
    const crashed = new Promise((_, reject) => {
      consumer.on(consumer.events.CRASH, (e) => reject(e.payload.error))
    })
    await consumer.run({
      autoCommit: true,
      eachMessage: async ({ partition, message }) => {
        messages.push({
          partition,
          offset: message.offset,
          key: message.key === null ? null : message.key.toString('utf8'),
          value: message.value === null ? null : message.value.toString('utf8'),
        })
        if (messages.length >= req.count) done()
      },
    })
    await Promise.race([finished, crashed])
    const admin = kafka.admin()
    await admin.connect()
    try {
      // eachMessage resolved: kafkajs commits the offsets when the consumer stops
      await consumer.stop()
      const committed = await admin.fetchOffsets({ groupId: req.groupId, topics: [req.topic] })
      return { messages, committed: committed[0].partitions.map((p) => ({ partition: p.partition, offset: p.offset })) }
    } finally {
      await admin.disconnect()
    }
  } finally {
    await consumer.disconnect()
  }
}

async function adminInfo(kafka) {
  const admin = kafka.admin()
  await admin.connect()
  try {
    const cluster = await admin.describeCluster()
    const topics = await admin.listTopics()
    return { brokers: cluster.brokers.map((b) => ({ nodeId: b.nodeId, host: b.host, port: b.port })), controller: cluster.controller, topics }
  } finally {
    await admin.disconnect()
  }
}

async function main() {
  const req = JSON.parse(await readStdin())
  const kafka = new Kafka({
    clientId: 'strom-kafkajs-test',
    brokers: req.brokers,
    ssl: sslOptions(req.ssl),
    sasl: req.sasl,
    connectionTimeout: 5000,
    authenticationTimeout: 10000,
    retry: { retries: req.retries ?? 2, initialRetryTime: 200 },
    logLevel: logLevel.WARN,
    logCreator: stderrLogger,
  })
  const actions = { produce, consume, admin: adminInfo }
  const action = actions[req.action]
  if (!action) throw new Error(`unknown action ${req.action}`)
  return withTimeout(action(kafka, req), req.timeoutMs ?? 30000, req.action)
}

main().then(
  (result) => {
    process.stdout.write(JSON.stringify({ ok: true, ...result }) + '\n')
    process.exit(0)
  },
  (e) => {
    const error = { name: e.name, type: e.type, message: e.message, retriable: e.retriable }
    if (e.cause) error.cause = { name: e.cause.name, type: e.cause.type, message: e.cause.message }
    process.stdout.write(JSON.stringify({ ok: false, error }) + '\n')
    process.exit(0)
  },
)
