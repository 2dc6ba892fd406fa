// Checking what the node shows, in the page: C2SP signed notes and checkpoints, the node's
// verifier key, witness cosignatures (cosignature/v1), RFC 9162 inclusion proofs and C2SP
// tlog-proof@v1 receipts. Every check returns or throws an Error whose message is the reason.

import { b64decode, concat, encoder, equal, hex, sha256 } from "/console/bytes.js";

const DASH = "\u2014";
const ED25519 = 0x01;
const COSIGNATURE = 0x04;
const RECEIPT = "c2sp.org/tlog-proof@v1";

async function keyHash(name, kind, raw) {
  return (await sha256(concat(encoder.encode(name + "\n"), Uint8Array.of(kind), raw))).slice(0, 4);
}

/** A C2SP verifier key `name+hexid+base64(type || key)` of the given type (0x01 node, 0x04 witness). */
export async function parseVkey(text, kind = ED25519) {
  const parts = text.trim().split("+");
  if (parts.length < 3 || !parts[0]) throw new Error("the verifier key is not NAME+HEX+BASE64");
  const [name, id] = parts;
  const raw = b64decode(parts.slice(2).join("+"), "the verifier key");
  if (raw.length !== 33 || raw[0] !== kind) {
    throw new Error(`the verifier key ${name} is not an Ed25519 key of type 0${kind}`);
  }
  const publicRaw = raw.slice(1);
  const keyId = await keyHash(name, kind, publicRaw);
  if (hex(keyId) !== id.toLowerCase()) throw new Error(`the verifier key ${name}: its key id does not match its key`);
  const key = await crypto.subtle.importKey("raw", publicRaw, { name: "Ed25519" }, false, ["verify"]);
  return { name, keyId, key, text: text.trim() };
}

/** A signed note split into its text (ending in a newline) and its signature lines. */
export function parseNote(note) {
  const split = note.lastIndexOf("\n\n");
  if (split < 0) throw new Error("the note has no blank line before its signatures");
  const text = note.slice(0, split + 1);
  const block = note.slice(split + 2);
  if (!block.endsWith("\n")) throw new Error("the note's signature block does not end in a newline");
  const signatures = block.slice(0, -1).split("\n").map((line) => {
    const parts = line.split(" ");
    if (parts.length !== 3 || parts[0] !== DASH || !parts[1]) throw new Error(`malformed signature line ${line.slice(0, 80)}`);
    const blob = b64decode(parts[2], "a signature");
    if (blob.length < 5) throw new Error("a signature is shorter than its key id");
    return { name: parts[1], keyId: blob.slice(0, 4), signature: blob.slice(4), line };
  });
  return { text, signatures };
}

/** The checkpoint's lines: origin, size, root (bytes) and extension lines (`state <hex>`). */
export function parseCheckpoint(text) {
  const lines = text.slice(0, -1).split("\n");
  if (!text.endsWith("\n") || lines.length < 3) throw new Error("the checkpoint needs origin, size and root lines");
  const [origin, sizeText, rootText, ...extensions] = lines;
  if (!/^(0|[1-9][0-9]{0,15})$/.test(sizeText)) throw new Error(`the checkpoint size ${sizeText.slice(0, 30)} is not a number`);
  const root = b64decode(rootText, "the checkpoint root");
  if (root.length !== 32) throw new Error("the checkpoint root is not 32 bytes");
  return { origin, size: Number(sizeText), root, extensions };
}

/**
 * Check a checkpoint note: a valid Ed25519 signature by the node's key (vkey), and each witness
 * cosignature against the witness keys given. Returns { checkpoint, signatures } where each
 * signature line says who signed and whether it verified; throws when the node's does not.
 */
export async function checkCheckpoint(noteText, vkey, witnesses = []) {
  const note = parseNote(noteText);
  const checkpoint = parseCheckpoint(note.text);
  if (checkpoint.origin !== vkey.name) {
    throw new Error(`the checkpoint's origin ${checkpoint.origin} is not the key's name ${vkey.name}`);
  }
  const signatures = [];
  let byNode = false;
  for (const sig of note.signatures) {
    const shown = { name: sig.name, keyId: hex(sig.keyId), kind: "unknown key", verified: null };
    if (sig.name === vkey.name && equal(sig.keyId, vkey.keyId)) {
      shown.kind = "node signature";
      shown.verified = sig.signature.length === 64 &&
        (await crypto.subtle.verify({ name: "Ed25519" }, vkey.key, sig.signature, encoder.encode(note.text)));
      if (!shown.verified) throw new Error(`the checkpoint signature by ${vkey.name} does not verify`);
      byNode = true;
    } else if (sig.signature.length === 72) {
      const time = new DataView(sig.signature.buffer, sig.signature.byteOffset, 8).getBigUint64(0);
      shown.kind = "cosignature";
      shown.time = Number(time);
      const witness = witnesses.find((w) => w.name === sig.name && equal(w.keyId, sig.keyId));
      if (witness) {
        const message = encoder.encode(`cosignature/v1\ntime ${time}\n${note.text}`);
        shown.verified = await crypto.subtle.verify({ name: "Ed25519" }, witness.key, sig.signature.slice(8), message);
        if (!shown.verified) throw new Error(`the cosignature by witness ${sig.name} does not verify`);
      }
    }
    signatures.push(shown);
  }
  if (!byNode) throw new Error(`the checkpoint carries no signature by ${vkey.name}`);
  return { checkpoint, signatures };
}

/** RFC 9162 leaf hash: SHA-256(0x00 || entry bytes). */
export function leafHash(entry) {
  return sha256(concat(Uint8Array.of(0), entry));
}

function nodeHash(left, right) {
  return sha256(concat(Uint8Array.of(1), left, right));
}

/** The root an RFC 9162 (2.1.3.2) inclusion proof gives for a leaf; throws if the proof's shape is wrong. */
export async function rootFromInclusion(index, size, leaf, proof) {
  if (!(index < size)) throw new Error(`index ${index} is not in a tree of ${size} entries`);
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) throw new Error("the inclusion proof is longer than the tree is deep");
    if (fn % 2 === 1 || fn === sn) {
      r = await nodeHash(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new Error("the inclusion proof is shorter than the tree is deep");
  return r;
}

/** A C2SP tlog-proof@v1: { extra (bytes or null), index, proof (list of bytes), checkpoint (note text) }. */
export function parseReceipt(text) {
  const split = text.indexOf("\n\n");
  if (split < 0) throw new Error("the receipt has no blank line before its checkpoint");
  const lines = text.slice(0, split).split("\n");
  if (lines[0] !== RECEIPT) throw new Error(`the receipt's first line is not ${RECEIPT}`);
  let rest = lines.slice(1);
  let extra = null;
  if (rest.length && rest[0].startsWith("extra ")) {
    extra = b64decode(rest[0].slice(6), "the receipt's extra line");
    rest = rest.slice(1);
  }
  if (!rest.length || !/^index (0|[1-9][0-9]{0,15})$/.test(rest[0])) throw new Error("the receipt has no index line");
  const index = Number(rest[0].slice(6));
  const proof = rest.slice(1).map((line) => {
    const hash = b64decode(line, "an inclusion proof line");
    if (hash.length !== 32) throw new Error("an inclusion proof hash is not 32 bytes");
    return hash;
  });
  return { extra, index, proof, checkpoint: text.slice(split + 2) };
}

/**
 * Check entry `seq`'s receipt in the page: it is for that entry (index, and the bytes when
 * `entryBytes` is given), its checkpoint is signed by the node (vkey), and the leaf hash
 * SHA-256(0x00 || entry) with the inclusion proof gives the checkpoint's root.
 * Returns { leaf, root, size, signatures }; throws an Error with the reason otherwise.
 */
export async function checkReceipt(receiptText, seq, vkey, entryBytes = null, witnesses = []) {
  const receipt = parseReceipt(receiptText);
  if (receipt.index !== seq) throw new Error(`the receipt is for entry ${receipt.index}, not ${seq}`);
  if (receipt.extra === null) throw new Error("the receipt carries no entry bytes (extra)");
  if (entryBytes !== null && !equal(receipt.extra, entryBytes)) {
    throw new Error("the receipt's entry bytes are not the entry's");
  }
  const { checkpoint, signatures } = await checkCheckpoint(receipt.checkpoint, vkey, witnesses);
  const leaf = await leafHash(receipt.extra);
  const root = await rootFromInclusion(receipt.index, checkpoint.size, leaf, receipt.proof);
  if (!equal(root, checkpoint.root)) {
    throw new Error(`the inclusion proof does not lead to the checkpoint's root (tree of ${checkpoint.size})`);
  }
  return { leaf: hex(leaf), root: hex(root), size: checkpoint.size, signatures };
}
