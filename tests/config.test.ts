// Configuration: loadConfig rejects bad values naming the variable, and requires AUTH_SECRET in production.
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../server/config.ts';

const goodSecret = 'x'.repeat(32);

/** The ConfigError loadConfig throws for `env`. */
function configError(env: NodeJS.ProcessEnv): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`expected loadConfig to reject ${JSON.stringify(env)}`);
}

/** The variables a ConfigError's message names, one per `  NAME: reason` line. */
const named = (error: ConfigError) => [...error.message.matchAll(/^ {2}([A-Z_]+): /gm)].map((m) => m[1]);

describe('loadConfig', () => {
  it('applies the documented defaults to an empty environment', () => {
    expect(loadConfig({})).toEqual({
      NODE_ENV: 'development',
      PGLITE_DIR: '.data/pglite',
      PORT: 3000,
      HOST: '127.0.0.1',
      DB_APP_ROLE: 'skillviews_app',
      DB_POOL_SIZE: 10,
      DB_PREPARE: true,
      MIGRATE_ON_START: true,
      REQUEST_TIMEOUT_MS: 10_000,
      EXPOSE_ERRORS: false,
      LOG_LEVEL: 'info',
      METRICS: true,
      RATE_LIMIT_PER_MINUTE: 1200,
      RATE_LIMIT_PER_IP_PER_MINUTE: 60,
      TRUST_PROXY: false,
      LIVE_UPDATES: true,
      LIVE_STREAMS_PER_USER: 5,
      LIVE_MAX_STREAMS: 10_000,
      LIVE_HEARTBEAT_MS: 15_000,
    });
  });

  it('reads the deployment switches: flags in any common spelling, the direct URL, the time limit', () => {
    const config = loadConfig({
      DATABASE_URL: 'postgres://app@pgbouncer:6432/skills',
      DATABASE_DIRECT_URL: 'postgres://owner@db:5432/skills',
      DB_PREPARE: 'FALSE',
      MIGRATE_ON_START: '0',
      EXPOSE_ERRORS: 'on',
      REQUEST_TIMEOUT_MS: '2500',
    });
    expect(config).toMatchObject({
      DATABASE_DIRECT_URL: 'postgres://owner@db:5432/skills',
      DB_PREPARE: false,
      MIGRATE_ON_START: false,
      EXPOSE_ERRORS: true,
      REQUEST_TIMEOUT_MS: 2500,
    });
  });

  it('accepts good values', () => {
    const config = loadConfig({
      NODE_ENV: 'production',
      DATABASE_URL: 'postgresql://app@db.internal:5432/skills',
      PORT: '8080',
      AUTH_SECRET: goodSecret,
      DB_APP_ROLE: 'my_app_role',
      LOG_LEVEL: 'warn',
    });
    expect(config).toMatchObject({ PORT: 8080, DATABASE_URL: 'postgresql://app@db.internal:5432/skills', DB_APP_ROLE: 'my_app_role' });
  });

  it.each([
    ['PORT', { PORT: 'abc' }],
    ['PORT', { PORT: '70000' }],
    ['PORT', { PORT: '-1' }],
    ['PORT', { PORT: '80.5' }],
    ['DATABASE_URL', { DATABASE_URL: 'mysql://root@localhost/skills' }],
    ['DATABASE_URL', { DATABASE_URL: 'localhost:5432' }],
    ['LOG_LEVEL', { LOG_LEVEL: 'loud' }],
    ['DB_APP_ROLE', { DB_APP_ROLE: 'x; drop' }],
    ['DB_APP_ROLE', { DB_APP_ROLE: 'SkillViews' }],
    ['DB_APP_ROLE', { DB_APP_ROLE: '"quoted"' }],
    ['AUTH_SECRET', { AUTH_SECRET: 'too-short' }],
    ['DB_POOL_SIZE', { DB_POOL_SIZE: '0' }],
    ['NODE_ENV', { NODE_ENV: 'staging' }],
    ['DATABASE_DIRECT_URL', { DATABASE_URL: 'postgres://a@b/c', DATABASE_DIRECT_URL: 'mysql://a@b/c' }],
    ['DATABASE_DIRECT_URL', { DATABASE_DIRECT_URL: 'postgres://a@b/c' }],
    ['DB_PREPARE', { DB_PREPARE: 'maybe' }],
    ['MIGRATE_ON_START', { MIGRATE_ON_START: '2' }],
    ['EXPOSE_ERRORS', { EXPOSE_ERRORS: 'yes please' }],
    ['REQUEST_TIMEOUT_MS', { REQUEST_TIMEOUT_MS: '10s' }],
    ['REQUEST_TIMEOUT_MS', { REQUEST_TIMEOUT_MS: '5' }],
    ['VIEW_RETENTION_DAYS', { VIEW_RETENTION_DAYS: '0' }],
    ['VIEW_RETENTION_DAYS', { VIEW_RETENTION_DAYS: 'abc' }],
    ['VIEW_RETENTION_DAYS', { VIEW_RETENTION_DAYS: '-30' }],
    ['VIEW_RETENTION_DAYS', { VIEW_RETENTION_DAYS: '1.5' }],
    ['VIEW_RETENTION_DAYS', { VIEW_RETENTION_DAYS: '30d' }],
    ['METRICS', { METRICS: 'sometimes' }],
    ['METRICS_TOKEN', { METRICS_TOKEN: 'short' }],
    ['METRICS_TOKEN', { METRICS_TOKEN: 'has spaces in the middle of it' }],
    ['RATE_LIMIT_PER_MINUTE', { RATE_LIMIT_PER_MINUTE: '-1' }],
    ['RATE_LIMIT_PER_MINUTE', { RATE_LIMIT_PER_MINUTE: '100/min' }],
    ['RATE_LIMIT_PER_MINUTE', { RATE_LIMIT_PER_MINUTE: '1.5' }],
    ['RATE_LIMIT_PER_IP_PER_MINUTE', { RATE_LIMIT_PER_IP_PER_MINUTE: 'lots' }],
    ['RATE_LIMIT_REDIS_URL', { RATE_LIMIT_REDIS_URL: '127.0.0.1:6379' }],
    ['RATE_LIMIT_REDIS_URL', { RATE_LIMIT_REDIS_URL: 'http://cache:6379' }],
  ] as [string, NodeJS.ProcessEnv][])('rejects a bad %s, naming it: %j', (variable, env) => {
    const error = configError(env);
    expect(error.message).toMatch(/^Invalid configuration:/);
    expect(named(error)).toEqual([variable]);
  });

  it('names every bad variable at once', () => {
    const error = configError({ PORT: 'abc', LOG_LEVEL: 'loud', DATABASE_URL: 'mysql://x' });
    expect(named(error).sort()).toEqual(['DATABASE_URL', 'LOG_LEVEL', 'PORT']);
  });

  it('says why the value is wrong', () => {
    expect(configError({ AUTH_SECRET: 'short' }).message).toMatch(/AUTH_SECRET: .*32 characters/);
    expect(configError({ DATABASE_URL: 'mysql://x' }).message).toMatch(/DATABASE_URL: .*postgres/);
  });

  it('requires AUTH_SECRET in production, and only there', () => {
    const error = configError({ NODE_ENV: 'production' });
    expect(named(error)).toEqual(['AUTH_SECRET']);
    expect(error.message).toMatch(/AUTH_SECRET: is required when NODE_ENV=production/);
    expect(named(configError({ NODE_ENV: 'production', AUTH_SECRET: '' }))).toEqual(['AUTH_SECRET']);
    expect(named(configError({ NODE_ENV: 'production', AUTH_SECRET: 'short' }))).toEqual(['AUTH_SECRET']);
    expect(loadConfig({ NODE_ENV: 'production', AUTH_SECRET: goodSecret }).AUTH_SECRET).toBe(goodSecret);
    expect(loadConfig({ NODE_ENV: 'development' }).AUTH_SECRET).toBeUndefined();
  });

  it('reads VIEW_RETENTION_DAYS as whole days; unset or empty keeps view rows forever', () => {
    expect(loadConfig({ VIEW_RETENTION_DAYS: '30' }).VIEW_RETENTION_DAYS).toBe(30);
    expect(loadConfig({ VIEW_RETENTION_DAYS: '1' }).VIEW_RETENTION_DAYS).toBe(1);
    expect(loadConfig({}).VIEW_RETENTION_DAYS).toBeUndefined();
    expect(loadConfig({ VIEW_RETENTION_DAYS: '' }).VIEW_RETENTION_DAYS).toBeUndefined();
    expect(configError({ VIEW_RETENTION_DAYS: '0' }).message).toMatch(/^ {2}VIEW_RETENTION_DAYS: /m);
  });

  it('serves metrics by default outside production only; METRICS overrides either way', () => {
    expect(loadConfig({}).METRICS).toBe(true);
    expect(loadConfig({ NODE_ENV: 'test' }).METRICS).toBe(true);
    expect(loadConfig({ NODE_ENV: 'production', AUTH_SECRET: goodSecret }).METRICS).toBe(false);
    expect(loadConfig({ NODE_ENV: 'production', AUTH_SECRET: goodSecret, METRICS: 'true' }).METRICS).toBe(true);
    expect(loadConfig({ METRICS: 'off' }).METRICS).toBe(false);
    expect(loadConfig({ METRICS: '' }).METRICS).toBe(true);
    expect(loadConfig({ NODE_ENV: 'production', AUTH_SECRET: goodSecret, METRICS: ' ' }).METRICS).toBe(false);
  });

  it('reads METRICS_TOKEN, the rate limits (0 turns one off) and the Redis URL', () => {
    const token = 'm'.repeat(16);
    expect(loadConfig({ METRICS_TOKEN: token }).METRICS_TOKEN).toBe(token);
    expect(loadConfig({ METRICS_TOKEN: '' }).METRICS_TOKEN).toBeUndefined();
    expect(
      loadConfig({ RATE_LIMIT_PER_MINUTE: '60', RATE_LIMIT_PER_IP_PER_MINUTE: '0', RATE_LIMIT_REDIS_URL: 'redis://127.0.0.1:6379/2' }),
    ).toMatchObject({ RATE_LIMIT_PER_MINUTE: 60, RATE_LIMIT_PER_IP_PER_MINUTE: 0, RATE_LIMIT_REDIS_URL: 'redis://127.0.0.1:6379/2' });
    expect(loadConfig({ RATE_LIMIT_REDIS_URL: 'rediss://cache.internal:6380' }).RATE_LIMIT_REDIS_URL).toBe('rediss://cache.internal:6380');
    expect(loadConfig({}).RATE_LIMIT_REDIS_URL).toBeUndefined();
  });

  it('treats empty values as unset', () => {
    expect(loadConfig({ PORT: '', DATABASE_URL: ' ', LOG_LEVEL: '' })).toMatchObject({ PORT: 3000, LOG_LEVEL: 'info' });
    expect(loadConfig({ DATABASE_URL: '' }).DATABASE_URL).toBeUndefined();
  });
});

describe('TRUST_PROXY', () => {
  it('takes true, false or a list of proxy addresses, and names itself when given anything else', () => {
    expect(loadConfig({ TRUST_PROXY: 'true' }).TRUST_PROXY).toBe(true);
    expect(loadConfig({ TRUST_PROXY: 'false' }).TRUST_PROXY).toBe(false);
    expect(loadConfig({ TRUST_PROXY: '10.0.0.1, 10.1.0.0/16' }).TRUST_PROXY).toEqual(['10.0.0.1', '10.1.0.0/16']);
    expect(() => loadConfig({ TRUST_PROXY: '2' })).toThrow(/TRUST_PROXY/); // hop counts fail closed in Fastify 5
    expect(() => loadConfig({ TRUST_PROXY: '10.0.0.0/33' })).toThrow(/TRUST_PROXY/);
    expect(() => loadConfig({ TRUST_PROXY: 'everyone' })).toThrow(/TRUST_PROXY/);
  });
});
