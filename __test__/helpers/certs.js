'use strict';

// A throwaway CA and a server certificate for 127.0.0.1 signed by it, made with the
// openssl command, so that TLS to the Kubernetes API stand-in is verified for real.
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

function openssl (dir, args) {
  try {
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (error) {
    throw new Error(`openssl ${args[0]} failed (is openssl installed?): ${error.stderr || error.message}`);
  }
}

// Returns { dir, caPem, key, cert } for a CA named `name`.
function makeCertificates (name = 'test-ca') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swarm-certs-'));
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(dir, ['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  openssl(dir, ['req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=kube-standin']);
  fs.writeFileSync(path.join(dir, 'ext.cnf'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n');
  openssl(dir, ['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
    '-out', 'server.crt', '-days', '2', '-extfile', 'ext.cnf']);
  const read = f => fs.readFileSync(path.join(dir, f), 'utf8');
  return { dir, caPem: read('ca.crt'), key: read('server.key'), cert: read('server.crt') };
}

module.exports = { makeCertificates };
