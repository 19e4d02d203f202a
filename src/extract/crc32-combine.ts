/**
 * CRC-32 arithmetic (the gzip/zip polynomial, reflected): the CRC of two byte runs joined, from
 * the CRC of each and the second one's length, without reading the bytes again. Extraction uses it
 * to check gzip's CRC-32 of the whole tar from the per-file CRC-32s it computes anyway, so inflate
 * does not compute the same check a second time (see gzip-frame.ts).
 */
const POLYNOMIAL = 0xedb88320;

/** a·b modulo the CRC polynomial, both in CRC-32's bit-reflected representation (x^0 is 1 << 31). */
function multiplyModP(a: number, b: number): number {
  let product = 0;
  let factor = b >>> 0;
  for (let bit = 0x80000000; bit !== 0; bit >>>= 1) {
    if ((a & bit) !== 0) product ^= factor;
    factor = factor & 1 ? (factor >>> 1) ^ POLYNOMIAL : factor >>> 1;
  }
  return product >>> 0;
}

/** x^(2^k) modulo the polynomial, k = 0..63. */
const X_TO_2K: number[] = (() => {
  const table = [0x40000000]; // x^1
  for (let k = 1; k < 64; k++) {
    const previous = table[k - 1] as number;
    table.push(multiplyModP(previous, previous));
  }
  return table;
})();

/** x^(8·bytes) modulo the polynomial: what shifting a CRC past `bytes` more bytes multiplies it by. */
function shiftFactor(bytes: number): number {
  let factor = 0x80000000; // x^0
  let k = 3; // 8 = 2^3
  for (let n = bytes; n > 0; n = Math.floor(n / 2), k++) {
    if (n % 2 === 1) factor = multiplyModP(X_TO_2K[k % 64] as number, factor);
  }
  return factor;
}

/** The CRC-32 of A followed by B, from crc32(A), crc32(B) and B's length in bytes. */
export function crc32Combine(crcA: number, crcB: number, lengthB: number): number {
  return (multiplyModP(shiftFactor(lengthB), crcA >>> 0) ^ (crcB >>> 0)) >>> 0;
}
