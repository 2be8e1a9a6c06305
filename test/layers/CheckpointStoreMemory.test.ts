import * as CheckpointStoreMemory from "../../src/layers/CheckpointStoreMemory.js"
import { checkpointStoreContract } from "./CheckpointStore.contract.js"

checkpointStoreContract("CheckpointStoreMemory", () => CheckpointStoreMemory.layer)
