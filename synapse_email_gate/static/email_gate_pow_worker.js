// Proof-of-work search, run in a Web Worker by email_gate_challenge.js.
// Input message: {challenge, difficulty, start, step, engine?, batch?}. The
// worker tries the nonces start, start + step, start + 2*step, ... (decimal
// strings) until SHA-256(challenge + ":" + nonce) starts with `difficulty` zero
// bits, then posts {type: "found", nonce, hashes, engine}. Every ~100 ms it
// posts {type: "progress", hashes, engine}. engine: "webcrypto" (crypto.subtle),
// "js" (the plain-JS SHA-256 below) or "auto" (the default: whichever is faster
// here). See docs/challenge.md.
"use strict";

var DEFAULT_BATCH = 512;  // digests in flight at once

function leadingZeroBitsAtLeast(bytes, bits) {
  var full = bits >> 3;
  for (var i = 0; i < full; i++) {
    if (bytes[i] !== 0) { return false; }
  }
  var rest = bits & 7;
  return rest === 0 || (bytes[full] >> (8 - rest)) === 0;
}

// Writes the decimal digits of n (a non-negative safe integer) into buf at
// offset; returns the new length.
function writeDecimal(buf, offset, n) {
  var digits = String(n);
  for (var i = 0; i < digits.length; i++) { buf[offset + i] = digits.charCodeAt(i); }
  return offset + digits.length;
}

// --- SHA-256 in plain JS: where crypto.subtle is missing (a page served over
// plain http from a remote host) or slower (see pickEngine). ------------------
var K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
]);
var W = new Int32Array(64);
var IV = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

// One SHA-256 compression of the 64 bytes of `bytes` at `off` into `state`.
function compress(state, bytes, off) {
  for (var t = 0; t < 16; t++) {
    var p = off + t * 4;
    W[t] = (bytes[p] << 24) | (bytes[p + 1] << 16) | (bytes[p + 2] << 8) | bytes[p + 3];
  }
  for (t = 16; t < 64; t++) {
    var w15 = W[t - 15], w2 = W[t - 2];
    var s0 = ((w15 >>> 7) | (w15 << 25)) ^ ((w15 >>> 18) | (w15 << 14)) ^ (w15 >>> 3);
    var s1 = ((w2 >>> 17) | (w2 << 15)) ^ ((w2 >>> 19) | (w2 << 13)) ^ (w2 >>> 10);
    W[t] = (W[t - 16] + s0 + W[t - 7] + s1) | 0;
  }
  var a = state[0], b = state[1], c = state[2], d = state[3];
  var e = state[4], f = state[5], g = state[6], h = state[7];
  for (t = 0; t < 64; t++) {
    var S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    var t1 = (h + S1 + ((e & f) ^ (~e & g)) + K[t] + W[t]) | 0;
    var S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    var t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    h = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
  }
  state[0] = (state[0] + a) | 0; state[1] = (state[1] + b) | 0;
  state[2] = (state[2] + c) | 0; state[3] = (state[3] + d) | 0;
  state[4] = (state[4] + e) | 0; state[5] = (state[5] + f) | 0;
  state[6] = (state[6] + g) | 0; state[7] = (state[7] + h) | 0;
}

// SHA-256 of prefix + suffix for many suffixes: the prefix's whole 64-byte
// blocks are hashed once. first(suffixLength) hashes prefix + this.tail[..] and
// returns the digest's first 32 bits (enough for difficulties up to 32).
function PrefixHasher(prefix) {
  var whole = prefix.length >> 6;
  this.mid = new Int32Array(IV);
  for (var i = 0; i < whole; i++) { compress(this.mid, prefix, i * 64); }
  this.rest = prefix.length - whole * 64;  // prefix bytes in the tail blocks
  this.prefixLength = prefix.length;
  this.block = new Uint8Array(192);
  this.block.set(prefix.subarray(whole * 64));
  this.tail = this.block.subarray(this.rest);  // where the suffix goes
  this.state = new Int32Array(8);
}

PrefixHasher.prototype.first = function (suffixLength) {
  var block = this.block;
  var len = this.rest + suffixLength;
  var blocks = (len + 9 + 63) >> 6;
  var end = blocks * 64;
  block[len] = 0x80;
  block.fill(0, len + 1, end - 4);
  var bits = (this.prefixLength + suffixLength) * 8;
  block[end - 4] = bits >>> 24; block[end - 3] = (bits >>> 16) & 0xff;
  block[end - 2] = (bits >>> 8) & 0xff; block[end - 1] = bits & 0xff;
  var state = this.state;
  state.set(this.mid);
  for (var off = 0; off < end; off += 64) { compress(state, block, off); }
  return state[0];
};

// --- end of the plain-JS SHA-256 -----------------------------------------------

// The search. Nonces are job.start, job.start + job.step, ...; `hashes` counts
// what this worker tried. Each round returns the winning nonce or -1.
function Search(job) {
  var prefix = new TextEncoder().encode(job.challenge + ":");
  this.job = job;
  this.prefixLength = prefix.length;
  this.buf = new Uint8Array(prefix.length + 20);
  this.buf.set(prefix);
  this.nonce = job.start;
  this.hashes = 0;
  this.plain = new PrefixHasher(prefix);
  this.zeroShift = 32 - job.difficulty;  // first word >>> zeroShift must be 0
}

Search.prototype.plainRound = function (count) {
  var job = this.job;
  for (var i = 0; i < count; i++) {
    var n = this.nonce;
    this.nonce += job.step;
    this.hashes++;
    var digits = writeDecimal(this.plain.tail, 0, n);
    if ((this.plain.first(digits) >>> this.zeroShift) === 0) { return n; }
  }
  return -1;
};

Search.prototype.subtleRound = async function (subtle, count) {
  var job = this.job;
  var tried = new Array(count);
  var pending = new Array(count);
  for (var i = 0; i < count; i++) {
    tried[i] = this.nonce;
    this.nonce += job.step;
    var end = writeDecimal(this.buf, this.prefixLength, tried[i]);
    // digest() copies its input before returning, so buf can be reused.
    pending[i] = subtle.digest("SHA-256", this.buf.subarray(0, end));
  }
  var digests = await Promise.all(pending);
  this.hashes += count;
  for (i = 0; i < count; i++) {
    if (leadingZeroBitsAtLeast(new Uint8Array(digests[i]), job.difficulty)) { return tried[i]; }
  }
  return -1;
};

// Which SHA-256 is faster here: WebCrypto pays a round trip per digest, which
// on some machines costs more than hashing in plain JS (and in a browser
// without a JIT, plain JS is the slow one). Two timed rounds of each, the best
// of each counts; every round searches for real.
async function pickEngine(search, subtle) {
  var found = search.plainRound(1024);  // lets the JIT warm up
  var best = { webcrypto: Infinity, js: Infinity };
  for (var round = 0; round < 2 && found < 0; round++) {
    var t0 = performance.now();
    found = await search.subtleRound(subtle, 1024);
    best.webcrypto = Math.min(best.webcrypto, performance.now() - t0);
    if (found >= 0) { break; }
    t0 = performance.now();
    found = search.plainRound(1024);
    best.js = Math.min(best.js, performance.now() - t0);
  }
  // WebCrypto only when clearly faster: a timing disturbed by other work on the
  // machine should not pick the engine that is slower most of the time.
  return { engine: best.webcrypto * 2 < best.js ? "webcrypto" : "js", found: found };
}

async function run(job) {
  var subtle = self.crypto && self.crypto.subtle;
  var search = new Search(job);
  var engine = subtle ? (job.engine || "auto") : "js";
  var found = -1;
  if (engine === "auto") {
    var picked = await pickEngine(search, subtle);
    engine = picked.engine;
    found = picked.found;
  }
  var lastReport = Date.now();
  var batch = job.batch || DEFAULT_BATCH;
  while (found < 0) {
    found = engine === "webcrypto" ? await search.subtleRound(subtle, batch) : search.plainRound(4096);
    var now = Date.now();
    if (found < 0 && now - lastReport >= 100) {
      lastReport = now;
      self.postMessage({ type: "progress", hashes: search.hashes, engine: engine });
    }
  }
  self.postMessage({ type: "found", nonce: String(found), hashes: search.hashes, engine: engine });
}

self.onmessage = function (event) {
  run(event.data).catch(function (error) {
    self.postMessage({ type: "error", message: String(error) });
  });
};
