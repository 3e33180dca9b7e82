// Proof-of-work search, run in a Web Worker by email_gate_challenge.js.
// Input message: {challenge, difficulty, start, step}. The worker tries the
// nonces start, start + step, start + 2*step, ... (decimal strings) until
// SHA-256(challenge + ":" + nonce) starts with `difficulty` zero bits, then
// posts {type: "found", nonce, hashes}. Every ~100 ms it posts
// {type: "progress", hashes}. See docs/challenge.md.
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

// --- SHA-256 in plain JS, only for pages served without a secure context
// (plain http to a remote host), where crypto.subtle does not exist. ---------
var K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
]);
var W = new Uint32Array(64);

function sha256(msg, len) {
  var blocks = ((len + 9 + 63) >> 6);
  var padded = new Uint8Array(blocks * 64);
  padded.set(msg.subarray(0, len));
  padded[len] = 0x80;
  var bitLen = len * 8;
  padded[padded.length - 4] = (bitLen >>> 24) & 0xff;
  padded[padded.length - 3] = (bitLen >>> 16) & 0xff;
  padded[padded.length - 2] = (bitLen >>> 8) & 0xff;
  padded[padded.length - 1] = bitLen & 0xff;
  var h0 = 0x6a09e667, h1 = 0xbb67ae85, h2 = 0x3c6ef372, h3 = 0xa54ff53a;
  var h4 = 0x510e527f, h5 = 0x9b05688c, h6 = 0x1f83d9ab, h7 = 0x5be0cd19;
  for (var off = 0; off < padded.length; off += 64) {
    for (var t = 0; t < 16; t++) {
      var p = off + t * 4;
      W[t] = (padded[p] << 24) | (padded[p + 1] << 16) | (padded[p + 2] << 8) | padded[p + 3];
    }
    for (t = 16; t < 64; t++) {
      var w15 = W[t - 15], w2 = W[t - 2];
      var s0 = ((w15 >>> 7) | (w15 << 25)) ^ ((w15 >>> 18) | (w15 << 14)) ^ (w15 >>> 3);
      var s1 = ((w2 >>> 17) | (w2 << 15)) ^ ((w2 >>> 19) | (w2 << 13)) ^ (w2 >>> 10);
      W[t] = (W[t - 16] + s0 + W[t - 7] + s1) | 0;
    }
    var a = h0, b = h1, c = h2, d = h3, e = h4, f = h5, g = h6, h = h7;
    for (t = 0; t < 64; t++) {
      var S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      var ch = (e & f) ^ (~e & g);
      var t1 = (h + S1 + ch + K[t] + W[t]) | 0;
      var S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      var maj = (a & b) ^ (a & c) ^ (b & c);
      var t2 = (S0 + maj) | 0;
      h = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    h0 = (h0 + a) | 0; h1 = (h1 + b) | 0; h2 = (h2 + c) | 0; h3 = (h3 + d) | 0;
    h4 = (h4 + e) | 0; h5 = (h5 + f) | 0; h6 = (h6 + g) | 0; h7 = (h7 + h) | 0;
  }
  var out = new Uint8Array(32);
  var hs = [h0, h1, h2, h3, h4, h5, h6, h7];
  for (var i = 0; i < 8; i++) {
    out[i * 4] = hs[i] >>> 24; out[i * 4 + 1] = (hs[i] >>> 16) & 0xff;
    out[i * 4 + 2] = (hs[i] >>> 8) & 0xff; out[i * 4 + 3] = hs[i] & 0xff;
  }
  return out;
}
// --- end of the fallback ------------------------------------------------------

async function searchSubtle(job, prefix, subtle) {
  var BATCH = job.batch || DEFAULT_BATCH;
  var buf = new Uint8Array(prefix.length + 20);
  buf.set(prefix);
  var tried = new Array(BATCH);
  var pending = new Array(BATCH);
  var nonce = job.start;
  var hashes = 0;
  var lastReport = Date.now();
  for (;;) {
    for (var i = 0; i < BATCH; i++) {
      var n = nonce + i * job.step;
      tried[i] = n;
      var end = writeDecimal(buf, prefix.length, n);
      // digest() copies its input before returning, so buf can be reused.
      pending[i] = subtle.digest("SHA-256", buf.subarray(0, end));
    }
    var digests = await Promise.all(pending);
    for (i = 0; i < BATCH; i++) {
      if (leadingZeroBitsAtLeast(new Uint8Array(digests[i]), job.difficulty)) {
        self.postMessage({ type: "found", nonce: String(tried[i]), hashes: hashes + i + 1 });
        return;
      }
    }
    nonce += BATCH * job.step;
    hashes += BATCH;
    var now = Date.now();
    if (now - lastReport >= 100) {
      lastReport = now;
      self.postMessage({ type: "progress", hashes: hashes });
    }
  }
}

function searchPlain(job, prefix) {
  var buf = new Uint8Array(prefix.length + 20);
  buf.set(prefix);
  var nonce = job.start;
  var hashes = 0;
  var lastReport = Date.now();
  // Work in slices so progress messages go out.
  function slice() {
    for (var i = 0; i < 4096; i++) {
      var end = writeDecimal(buf, prefix.length, nonce);
      hashes++;
      if (leadingZeroBitsAtLeast(sha256(buf, end), job.difficulty)) {
        self.postMessage({ type: "found", nonce: String(nonce), hashes: hashes });
        return;
      }
      nonce += job.step;
    }
    var now = Date.now();
    if (now - lastReport >= 100) {
      lastReport = now;
      self.postMessage({ type: "progress", hashes: hashes });
    }
    setTimeout(slice, 0);
  }
  slice();
}

self.onmessage = function (event) {
  var job = event.data;
  var prefix = new TextEncoder().encode(job.challenge + ":");
  var subtle = self.crypto && self.crypto.subtle;
  if (subtle && !job.plain) {
    searchSubtle(job, prefix, subtle).catch(function (error) {
      self.postMessage({ type: "error", message: String(error) });
    });
  } else {
    searchPlain(job, prefix);
  }
};
