// ESLint flat config: typescript-eslint's type-free rules plus dprint (through `@effect/dprint`) as the
// only formatter, with the dprint settings the Effect repository uses. `npm run lint` checks, `npm run format` fixes.
import * as effectEslint from "@effect/eslint-plugin"
import js from "@eslint/js"
import { defineConfig } from "eslint/config"
import tseslint from "typescript-eslint"

// Node globals the plain-JS entry points may touch (TypeScript files get them from @types/node instead).
const nodeGlobals = {
  Buffer: "readonly",
  URL: "readonly",
  clearTimeout: "readonly",
  console: "readonly",
  process: "readonly",
  setTimeout: "readonly"
}

export default defineConfig(
  {
    ignores: ["**/dist/**", "**/coverage/**", "**/node_modules/**", "bench/results/**", ".streaming-reader/**"]
  },
  js.configs.recommended,
  tseslint.configs.recommended,
  effectEslint.configs.dprint,
  {
    files: ["**/*.{ts,mts,cts,js,mjs,cjs}"],
    languageOptions: {
      parser: tseslint.parser,
      ecmaVersion: 2022,
      sourceType: "module"
    },
    rules: {
      // Effect-style code: generators without `yield`, overloads via rest args, exhaustive switches checked by tsc.
      "require-yield": "off",
      "prefer-rest-params": "off",
      "prefer-spread": "off",
      "no-fallthrough": "off",
      "no-irregular-whitespace": "off",
      // The CLI strips control characters and ANSI escapes from what it prints on purpose.
      "no-control-regex": "off",
      "object-shorthand": "error",
      "no-restricted-syntax": [
        "error",
        {
          selector: "CallExpression[callee.property.name='push'] > SpreadElement.arguments",
          message: "Do not use spread arguments in Array.push"
        }
      ],
      "no-unused-vars": "off",
      "@typescript-eslint/no-unused-vars": [
        "error",
        { argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrorsIgnorePattern: "^_" }
      ],
      "@typescript-eslint/consistent-type-imports": "warn",
      "@typescript-eslint/array-type": ["warn", { default: "generic", readonly: "generic" }],
      "@typescript-eslint/no-explicit-any": "off",
      "@typescript-eslint/no-non-null-assertion": "off",
      "@typescript-eslint/no-empty-object-type": "off",
      "@typescript-eslint/no-unsafe-function-type": "off",
      "@typescript-eslint/no-namespace": "off",
      "@typescript-eslint/ban-ts-comment": "off",
      "@effect/dprint": [
        "error",
        {
          config: {
            indentWidth: 2,
            lineWidth: 120,
            semiColons: "asi",
            quoteStyle: "alwaysDouble",
            trailingCommas: "never",
            operatorPosition: "maintain",
            "arrowFunction.useParentheses": "force",
            // Deviation from Effect's settings: keep import/export statement order as written
            // (dprint would re-sort them case-insensitively), so concurrent edits don't clash on it.
            "module.sortImportDeclarations": "maintain",
            "module.sortExportDeclarations": "maintain"
          }
        }
      ]
    }
  },
  {
    files: ["**/*.{js,mjs,cjs}"],
    languageOptions: { globals: nodeGlobals }
  }
)
