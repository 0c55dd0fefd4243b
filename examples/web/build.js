// Build step: record when and from which commit this release was built.
'use strict';
const fs = require('fs');

const info = {
  builtAt: new Date().toISOString(),
  commit: process.env.RENDER_GIT_COMMIT || null,
  node: process.version,
};
fs.writeFileSync('build-info.json', JSON.stringify(info, null, 2) + '\n');
console.log(`build-info.json written (${info.builtAt})`);
