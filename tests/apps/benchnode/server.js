// benchnode: an Express app with a few common dependencies (bench/build_cache.py).
'use strict';

const express = require('express');
const _ = require('lodash');
const dayjs = require('dayjs');
const { z } = require('zod');
require('axios');
require('pino');

const app = express();
app.get('/', (req, res) => {
  res.json({ node: process.version, ok: z.string().parse('ok'), n: _.sum([1, 2]), day: dayjs(0).year() });
});
app.listen(parseInt(process.env.PORT || '0', 10), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
