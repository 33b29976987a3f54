// Reads binding and uniform layouts from WGSL source with wgsl_reflect, so that no
// offset or binding index is ever written twice (once in WGSL, once in TypeScript).

import { WgslReflect } from 'wgsl_reflect/wgsl_reflect.module.js';
import type { ArrayInfo, StructInfo, TypeInfo } from 'wgsl_reflect';
import { ShaderError } from './errors.js';

/** A scalar or vector member of a uniform struct, located by byte offset. */
export interface UniformMember {
  name: string;
  offset: number;
  /** Scalar kind of each component. */
  kind: 'f32' | 'u32' | 'i32';
  components: number;
}

export interface BindingInfo {
  name: string;
  group: number;
  binding: number;
  /** 'uniform', 'storage' (read_write) or 'read-only-storage'. */
  type: GPUBufferBindingType;
  /** For uniforms: the struct layout; byte size is `size`. */
  members?: UniformMember[];
  size: number;
  /**
   * Fewest bytes a bound range may hold: the type's size, a runtime-sized array counted as
   * one element (WebGPU refuses shorter ranges when the run is submitted).
   */
  minSize: number;
}

/**
 * The bytes a binding of type `t` needs at least: its size, with a runtime-sized array (alone
 * or ending a struct) as one element (not rounded up to the struct's alignment: never more
 * than WebGPU's own minimum, so no valid range is refused).
 */
function minBindingSize(t: TypeInfo, size: number): number {
  const runtime = (u: TypeInfo | null | undefined) => u?.isArray && (u as ArrayInfo).count === 0;
  if (runtime(t)) return (t as ArrayInfo).stride;
  const last = t.isStruct ? (t as StructInfo).members.at(-1) : undefined;
  if (last && runtime(last.type)) return last.offset + (last.type as ArrayInfo).stride;
  return size;
}

export interface EntryInfo {
  name: string;
  bindings: BindingInfo[];
  overrides: string[];
}

export interface ShaderInfo {
  file: string;
  entries: Map<string, EntryInfo>;
}

// wgsl_reflect's ResourceType values; its Node build does not export the enum to ESM.
const ResourceType = { Uniform: 0, Storage: 1 } as const;

function scalarOf(t: TypeInfo): { kind: UniformMember['kind']; components: number } {
  const name = t.getTypeName();
  const scalars = ['f32', 'u32', 'i32'] as const;
  for (const s of scalars) {
    if (name === s) return { kind: s, components: 1 };
    const m = new RegExp(`^vec([234])<${s}>$`).exec(name);
    if (m) return { kind: s, components: Number(m[1]) };
    const short = new RegExp(`^vec([234])${s[0]}$`).exec(name);
    if (short) return { kind: s, components: Number(short[1]) };
  }
  throw new Error(`uniform member type ${name} is not f32/u32/i32 or a vector of them`);
}

/** Line and column of a character offset, 1-based, for error messages. */
function lineOf(source: string, line: number): string {
  return source.split('\n')[line - 1] ?? '';
}

export function reflectShader(file: string, source: string): ShaderInfo {
  let reflect: WgslReflect;
  try {
    reflect = new WgslReflect(source);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    // wgsl_reflect ends its messages with "Line: N" (a line, no column).
    const m = /line:?\s*(\d+)/i.exec(msg);
    const where = m ? `${file}:${m[1]}: ${lineOf(source, Number(m[1])).trim()}\n` : `${file}: `;
    const err = new ShaderError(`${where}WGSL parse error: ${msg}`);
    err.wgsl = { file, source };
    throw err;
  }
  const entries = new Map<string, EntryInfo>();
  for (const fn of reflect.entry.compute) {
    const bindings: BindingInfo[] = [];
    for (const r of fn.resources) {
      let type: GPUBufferBindingType;
      if (r.resourceType === ResourceType.Uniform) type = 'uniform';
      else if (r.resourceType === ResourceType.Storage) {
        type = r.access === 'read' ? 'read-only-storage' : 'storage';
      } else {
        throw new ShaderError(`${file}: entry ${fn.name}: binding ${r.name} is not a buffer`);
      }
      const info: BindingInfo = {
        name: r.name, group: r.group, binding: r.binding, type, size: r.size,
        minSize: minBindingSize(r.type, r.size),
      };
      // A uniform struct is the entry's parameter block, packed by the recorder; any other
      // uniform (an array of vec4) is a data buffer the caller binds by name.
      const members = type === 'uniform' ? r.members : null;
      if (members) {
        info.members = members.map((m) => {
          try {
            return { name: m.name, offset: m.offset, ...scalarOf(m.type) };
          } catch (e) {
            throw new ShaderError(`${file}: uniform ${r.name}.${m.name}: ${(e as Error).message}`);
          }
        });
      }
      bindings.push(info);
    }
    bindings.sort((a, b) => a.group - b.group || a.binding - b.binding);
    for (const b of bindings) {
      if (b.group !== 0) {
        throw new ShaderError(`${file}: entry ${fn.name}: binding ${b.name} is in group ` +
          `${b.group}; the engine uses group 0 only`);
      }
    }
    entries.set(fn.name, {
      name: fn.name,
      bindings,
      overrides: reflect.overrides.map((o) => o.name),
    });
  }
  if (entries.size === 0) throw new ShaderError(`${file}: no @compute entry point`);
  return { file, entries };
}
