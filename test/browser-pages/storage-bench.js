// Cache Storage against OPFS, for bench/browser-bench.ts: write and read times, quota behaviour.
/* global caches, navigator, Response */

async function time(work) {
  const started = performance.now();
  await work();
  return performance.now() - started;
}

/** One write and one read of `mb` MB (four files) in Cache Storage and in OPFS. */
export async function measureStorage(mb) {
  const shards = Array.from({ length: 4 }, (_, i) => {
    const bytes = new Uint8Array((mb << 20) / 4);
    for (let j = 0; j < bytes.length; j += 4096) bytes[j] = (i + j) & 255;
    return bytes;
  });
  await caches.delete("bench");
  const cache = await caches.open("bench");
  const key = (i) => `https://bench.invalid/${i}`;
  const cacheWrite = await time(() => Promise.all(shards.map((s, i) => cache.put(key(i), new Response(s)))));
  const cacheRead = await time(() =>
    Promise.all(shards.map(async (_, i) => (await cache.match(key(i))).arrayBuffer())),
  );
  await caches.delete("bench");
  const root = await navigator.storage.getDirectory();
  const opfsWrite = await time(() =>
    Promise.all(
      shards.map(async (s, i) => {
        const writable = await (await root.getFileHandle(`bench-${i}`, { create: true })).createWritable();
        await writable.write(s);
        await writable.close();
      }),
    ),
  );
  const opfsRead = await time(() =>
    Promise.all(
      shards.map(async (_, i) => (await (await root.getFileHandle(`bench-${i}`)).getFile()).arrayBuffer()),
    ),
  );
  for (let i = 0; i < 4; i++) await root.removeEntry(`bench-${i}`);
  return { cacheWrite, cacheRead, opfsWrite, opfsRead };
}

/** What each storage does with an 8 MB write that exceeds the quota: the error, and what is left. */
export async function quotaBehaviour() {
  const bytes = new Uint8Array(8 << 20);
  const out = {};
  const cache = await caches.open("bench-quota");
  try {
    await cache.put("https://bench.invalid/big", new Response(bytes));
    out.cache = "stored";
  } catch (error) {
    const left = await cache.match("https://bench.invalid/big");
    out.cache = `${error.name}; entry left: ${left ? "yes" : "no"}`;
  }
  await caches.delete("bench-quota");
  const root = await navigator.storage.getDirectory();
  const handle = await root.getFileHandle("bench-quota", { create: true });
  const writable = await handle.createWritable();
  try {
    await writable.write(bytes);
    await writable.close();
    out.opfs = "stored";
  } catch (error) {
    await writable.abort().catch(() => undefined);
    out.opfs = `${error.name}; file left: ${(await handle.getFile()).size} bytes, until removed`;
  }
  await root.removeEntry("bench-quota");
  return out;
}
