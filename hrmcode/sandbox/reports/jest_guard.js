// hrmcode's strict-mode guard for jest: shipped into the sandbox as a file and loaded with
// --setupFilesAfterEnv, so it runs in each test file's environment before the test file and the
// code under test are loaded. It pins jest's globals (expect, test, it, describe and the hooks),
// freezes jest's matcher table and custom equality testers, and after each test compares every
// function and accessor of the standard built-ins (and the global bindings that name them) with
// what they were before the test file loaded: a change fails that test. Code written against this
// guard can still get around it (it shares the test's realm); see hrmcode/sandbox/reports/frameworks.py.
'use strict';

for (const name of ['expect', 'test', 'it', 'describe', 'beforeEach', 'afterEach', 'beforeAll', 'afterAll']) {
  Object.defineProperty(globalThis, name, { value: globalThis[name], writable: false, configurable: false });
}

const MATCHERS = Symbol.for('$$jest-matchers-object');
const table = globalThis[MATCHERS];
if (table) {
  Object.freeze(table.matchers);
  if (Array.isArray(table.customEqualityTesters)) Object.freeze(table.customEqualityTesters);
  Object.defineProperty(globalThis, MATCHERS, { value: table, writable: false, configurable: false });
}

const BUILTINS = ['Object', 'Array', 'Function', 'String', 'Number', 'Boolean', 'Symbol', 'BigInt', 'Map', 'Set',
  'WeakMap', 'WeakSet', 'Reflect', 'JSON', 'Math', 'Error', 'TypeError', 'RegExp', 'Date', 'Promise', 'Proxy'];
const watched = [];
for (const name of BUILTINS) {
  const value = globalThis[name];
  watched.push([`globalThis.${name}`, globalThis, name, Object.getOwnPropertyDescriptor(globalThis, name)]);
  for (const [label, holder] of [[name, value], [`${name}.prototype`, value && value.prototype]]) {
    if (holder === null || (typeof holder !== 'object' && typeof holder !== 'function')) continue;
    for (const key of Reflect.ownKeys(holder)) {
      const descriptor = Object.getOwnPropertyDescriptor(holder, key);
      if (descriptor.get || descriptor.set || typeof descriptor.value === 'function') {
        watched.push([`${label}.${String(key)}`, holder, key, descriptor]);
      }
    }
  }
}

const getOwn = Object.getOwnPropertyDescriptor;
afterEach(() => {
  for (const [label, holder, key, before] of watched) {
    const now = getOwn(holder, key);
    if (!now || now.value !== before.value || now.get !== before.get || now.set !== before.set) {
      throw new Error(`hrmcode strict mode: ${label} was changed while the test ran`);
    }
  }
});
