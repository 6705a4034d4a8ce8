import os from 'node:os';

export interface MachineInfo {
  readonly date: string;
  readonly node: string;
  readonly platform: string;
  readonly cpus: number;
  readonly cpuModel?: string;
  /** The WebGPU adapter, when one was found. */
  readonly adapter?: Record<string, string>;
  /** The Vulkan driver Dawn was pointed at, if any (SwiftShader on GPU-less machines). */
  readonly vulkanDriver?: string;
}

/** What a benchmark or info report needs to say about where it ran. */
export function machineInfo(adapter?: Record<string, string>): MachineInfo {
  const cpus = os.cpus();
  const driver = process.env.VK_ICD_FILENAMES ?? process.env.VK_DRIVER_FILES;
  return {
    date: new Date().toISOString(),
    node: process.versions.node,
    platform: `${os.platform()}-${os.arch()}`,
    cpus: cpus.length,
    ...(cpus[0] ? { cpuModel: cpus[0].model } : {}),
    ...(adapter ? { adapter } : {}),
    ...(driver ? { vulkanDriver: driver } : {}),
  };
}
