// The restricted unpickler's state machine, shared by its opcode loop and its builders of allowed globals.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "fec/pickle.h"

namespace fec::pickle::detail {

// Executes one pickle (see unpickle() in fec/pickle.h); nothing it names is ever called.
class Unpickler {
public:
    Unpickler(const uint8_t* data, std::size_t size, std::map<std::string, Storage>& storages,
              std::vector<std::string>& ignored, const Limits& limits)
        : data_(data), size_(size), storages_(storages), ignored_(ignored), limits_(limits)
    {
    }

    Unpickler(const Unpickler&) = delete;
    Unpickler& operator=(const Unpickler&) = delete;

    ~Unpickler();

    ValuePtr run(std::size_t* consumed);

private:
    std::string where() const { return " at offset " + std::to_string(opPos_); }
    [[noreturn]] void truncated() const;
    const uint8_t* take(std::size_t n);
    std::string takeString(uint64_t n);
    std::string readLine(std::size_t maxLen);
    void spend(uint64_t steps);
    void charge(uint64_t bytes);
    void countItems(uint64_t n);
    ValuePtr make(Value::Kind kind);
    ValuePtr makeInt(int64_t i);
    ValuePtr makeString(std::string s, bool checkUtf8 = true);
    ValuePtr makeBytes(std::string s);
    std::size_t frameBase() const { return marks_.empty() ? 0 : marks_.back(); }
    void push(ValuePtr v);
    ValuePtr pop();
    ValuePtr& top();
    std::vector<ValuePtr> popMark();
    ValuePtr makeSequence(Value::Kind kind, std::vector<ValuePtr> items);
    void memoPut(uint64_t index);
    void memoGet(uint64_t index);
    int64_t parseDecimal(const std::string& text, const char* what);
    ValuePtr decodeLong(const uint8_t* p, std::size_t n);
    std::string unescapeString(const std::string& line);
    std::string rawUnicodeToUtf8(const std::string& line);
    bool canonicalKey(const Value& k, std::string& out, int depth = 0);
    void dictSet(const ValuePtr& d, ValuePtr key, ValuePtr value);
    ValuePtr& dictTarget();
    void setItems(std::vector<ValuePtr> kv);
    void appendItems(std::vector<ValuePtr> items);
    void build();
    bool step(uint8_t code);
    void checkResult(const ValuePtr& root);

    // Defined in pickle_globals.cpp: the allow-listed globals and their builders.
    ValuePtr makeGlobal(const std::string& module, const std::string& name);
    ValuePtr makeObject(const Value& cls, const std::vector<ValuePtr>& args);
    static bool isStorageValue(const Value& v) { return v.kind == Value::Kind::Tensor && !v.module.empty(); }
    int64_t intArg(const ValuePtr& v, const char* what);
    std::vector<int64_t> intList(const ValuePtr& v, const char* what);
    bool truthy(const ValuePtr& v);
    ValuePtr persistentLoad(const ValuePtr& pid);
    ValuePtr rebuildTensor(const std::vector<ValuePtr>& args, bool v2);
    int64_t tensorByteBudget() const;
    static std::string describeShape(const std::vector<int64_t>& sizes);
    std::string latin1Bytes(const std::string& utf8);
    ValuePtr toBytes(const std::vector<ValuePtr>& args, const std::string& fn);
    ValuePtr pairsToDict(ValuePtr d, const ValuePtr& source);
    ValuePtr call(const ValuePtr& fn, const ValuePtr& argsValue, bool newObj, int depth = 0);

    const uint8_t* data_;
    std::size_t size_;
    std::size_t pos_ = 0;
    std::size_t opPos_ = 0;
    std::map<std::string, Storage>& storages_;
    std::vector<std::string>& ignored_;
    const Limits& limits_;

    std::vector<ValuePtr> stack_;
    std::vector<std::size_t> marks_;
    std::unordered_map<uint64_t, ValuePtr> memo_;
    std::vector<ValuePtr> arena_;
    std::unordered_set<const Value*> kept_;
    std::unordered_map<const Value*, std::unordered_map<std::string, std::size_t>> dictIndex_;
    std::unordered_set<std::string> ignoredSeen_;
    uint64_t ops_ = 0;
    uint64_t items_ = 0;
    uint64_t memory_ = 0;
    int64_t storageBytes_ = 0;  ///< bytes of the distinct storages declared so far
    int64_t tensorBytes_ = 0;   ///< bytes of all tensors built so far, as if materialised
};

}  // namespace fec::pickle::detail
