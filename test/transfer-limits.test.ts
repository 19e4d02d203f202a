// The minimum-rate meter and the settings that drive it, without a network: exact numbers.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  DEFAULT_TRANSFER_LIMITS,
  SpeedMeter,
  isTooSlow,
  readTransferLimits,
} from "../src/net/transfer-limits.js";

const limits = { minSpeedBytesPerSec: 1000, speedWindowMs: 1000, deadlineMs: undefined };

describe("SpeedMeter", () => {
  it("does not judge before a whole window of waiting", () => {
    const meter = new SpeedMeter(limits);
    for (let i = 0; i < 9; i++) meter.record(1, 100); // 900 ms of waiting for 9 bytes
  });

  it("throws below the rate once a window has passed, saying the rate measured", () => {
    const meter = new SpeedMeter(limits);
    for (let i = 0; i < 9; i++) meter.record(10, 100);
    assert.throws(
      () => meter.record(10, 100),
      (error: unknown) => isTooSlow(error) && Math.round(error.bytesPerSec) === 100 && error.limit === 1000,
    );
  });

  it("counts only time spent waiting for the network, not the consumer's", () => {
    const meter = new SpeedMeter(limits);
    // 64 KiB chunks that each arrived at once (the consumer was the slow side): never too slow.
    for (let i = 0; i < 1000; i++) meter.record(65_536, 0);
  });

  it("averages over a sliding window: a fast start does not hide a later near-stall", () => {
    const meter = new SpeedMeter(limits);
    for (let i = 0; i < 50; i++) meter.record(5000, 100); // 50 kB/s for 5 s
    // Then 10 B/s: the average since the start stays far above 1000 B/s, the last second's does not.
    assert.throws(() => {
      for (let i = 0; i < 20; i++) meter.record(1, 100);
    }, isTooSlow);
  });

  it("0 turns the check off", () => {
    const meter = new SpeedMeter({ ...limits, minSpeedBytesPerSec: 0 });
    for (let i = 0; i < 100; i++) meter.record(0, 1000);
  });
});

describe("readTransferLimits", () => {
  it("defaults: 1 KiB/s over 30 s, no deadline", () => {
    assert.deepEqual(readTransferLimits({}), DEFAULT_TRANSFER_LIMITS);
    assert.deepEqual(DEFAULT_TRANSFER_LIMITS, {
      minSpeedBytesPerSec: 1024,
      speedWindowMs: 30_000,
      deadlineMs: undefined,
    });
  });

  it("reads HUBCACHE_MIN_SPEED (bytes/s), HUBCACHE_MIN_SPEED_TIME and HUBCACHE_DEADLINE (s); options win", () => {
    const env = { HUBCACHE_MIN_SPEED: "0", HUBCACHE_MIN_SPEED_TIME: "5", HUBCACHE_DEADLINE: "600" };
    assert.deepEqual(readTransferLimits(env), {
      minSpeedBytesPerSec: 0,
      speedWindowMs: 5000,
      deadlineMs: 600_000,
    });
    assert.deepEqual(
      readTransferLimits(env, { minSpeedBytesPerSec: 10, minSpeedWindowMs: 200, deadlineMs: 50 }),
      { minSpeedBytesPerSec: 10, speedWindowMs: 200, deadlineMs: 50 },
    );
  });

  it("refuses values that are not non-negative numbers (ERR_HUBCACHE_INVALID_CONFIG)", () => {
    assert.throws(() => readTransferLimits({ HUBCACHE_MIN_SPEED: "fast" }), {
      code: "ERR_HUBCACHE_INVALID_CONFIG",
    });
    assert.throws(() => readTransferLimits({}, { deadlineMs: -1 }), { code: "ERR_HUBCACHE_INVALID_CONFIG" });
  });
});
