// SPDX-License-Identifier: MIT
// Gridmarket payment channels (issue 6): non-custodial settlement between a
// renter and a provider, paid by cumulative EIP-712 vouchers.
//
// One contract holds every channel. There is no owner, no admin key, no
// pause and no upgrade path: nobody but a channel's renter and provider (and
// whoever holds the provider's vouchers) can move its funds, and only along
// the paths below. docs/channels.md is the long form; the short one:
//
//   open(provider, token, amount, expiry, signer) -> id   renter deposits `amount` of `token`
//   topUp(id, amount, newExpiry)                         renter only; expiry can only grow
//   redeem(id, cumulative, sig)                          anyone; pays the provider cumulative - paid
//   close(id, cumulative, sig)                           provider only; pays, refunds the rest, deletes
//   refund(id)                                           renter only, from expiry on; refunds, deletes
//   startClose(id) ... finishClose(id)                   renter only; CHALLENGE_WINDOW (1 hour) apart
//
// A voucher is the EIP-712 typed data Voucher(bytes32 channelId,uint256
// cumulativeAmount) in the domain {name "GridmarketChannels", version "1",
// chainId, verifyingContract: this}, signed by the channel's `signer` (the
// renter or a session key that holds no funds): 65 bytes r ‖ s ‖ v, v 27 or
// 28, s in the lower half of the order (EIP-2). Amounts are cumulative, so a
// voucher pays at most once (cumulative must exceed what was paid) and the
// newest voucher supersedes all earlier ones. Claims above the deposit revert.
//
// Channel ids are keccak256(abi.encode(renter, provider, token, nonce,
// chainid, this)) with a contract-wide nonce that only grows: an id is never
// reused, even after its channel is deleted, so no voucher outlives its
// channel, and none is valid on another chain or another deployment.
//
// Tokens: plain ERC-20s. Transfers are checked by hand (a token may return
// true or nothing; false, a revert or no code fail). A deposit must arrive in
// full (the contract's balance must grow by exactly the amount), so
// fee-on-transfer tokens are refused; rebasing tokens are not supported.
// Amounts are stored as uint96 (7.9e28 base units: 7.9e22 of a 6-decimal
// token) and times as uint48 so a channel fits in four storage slots, three
// when the renter signs its own vouchers.
pragma solidity 0.8.37;

contract PaymentChannels {
    // ------------------------------------------------------------ constants

    /// The renter's startClose() is final CHALLENGE_WINDOW seconds later: the
    /// provider's guaranteed time to redeem (or close with) its last voucher.
    uint256 public constant CHALLENGE_WINDOW = 1 hours;

    bytes32 public constant VOUCHER_TYPEHASH = keccak256("Voucher(bytes32 channelId,uint256 cumulativeAmount)");
    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    string private constant NAME = "GridmarketChannels";
    string private constant VERSION = "1";
    bytes32 private constant NAME_HASH = keccak256(bytes(NAME));
    bytes32 private constant VERSION_HASH = keccak256(bytes(VERSION));
    // secp256k1n / 2: signatures with a larger s are the malleated twin of a
    // low-s one (EIP-2) and are refused.
    uint256 private constant HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    // The domain separator, computed once; recomputed if the chain id ever
    // changes (a fork), so a voucher never verifies on the other chain.
    uint256 private immutable cachedChainId;
    bytes32 private immutable cachedDomainSeparator;

    // ------------------------------------------------------------ state

    // Four slots per channel, three when the renter is the signer;
    // renter == address(0) (and provider == address(0)) means "no such channel".
    struct Channel {
        address renter; // slot 0
        uint48 expiry; //   slot 0: from this unix time on, the renter may refund
        uint48 closeAt; //  slot 0: 0, or when a startClose() may be finished
        address provider; // slot 1
        uint96 deposit; //   slot 1: everything ever deposited
        address token; // slot 2
        uint96 paid; //   slot 2: everything paid to the provider so far (<= deposit)
        address signer; // slot 3: whose vouchers pay; address(0) when it is the renter
    }

    mapping(bytes32 => Channel) public channels;
    /// The nonce of the next channel id: 1 + the channels opened so far. It
    /// starts at 1 so that open() never pays for a zero-to-non-zero write.
    uint256 public nextNonce = 1;

    // Every state-changing entry point holds this lock (transient storage,
    // EIP-1153): a token that calls back into the contract finds it taken.
    bool private transient locked;

    // ------------------------------------------------------------ events

    event Opened(
        bytes32 indexed id,
        address indexed renter,
        address indexed provider,
        address token,
        address signer,
        uint256 deposit,
        uint64 expiry
    );
    event ToppedUp(bytes32 indexed id, uint256 deposit, uint64 expiry);
    event Redeemed(bytes32 indexed id, uint256 cumulative, uint256 payout);
    event CloseStarted(bytes32 indexed id, uint64 closeAt);
    /// Every way a channel ends (close, refund, finishClose): what the provider
    /// got over the channel's life and what went back to the renter.
    event Closed(bytes32 indexed id, uint256 paid, uint256 refund);
    /// EIP-5267: the domain never changes (except its chainId on a fork).
    event EIP712DomainChanged();

    // ------------------------------------------------------------ errors

    error Reentrancy();
    error ZeroAddress();
    error ZeroAmount();
    error AmountTooLarge();
    error BadExpiry();
    error NoSuchChannel();
    error NotRenter();
    error NotProvider();
    error CloseAlreadyStarted();
    error CloseNotStarted();
    error ChallengeWindowOpen();
    error ClosePending();
    error NotExpired();
    error OverClaim();
    error StaleVoucher();
    error BadSignatureLength();
    error BadSignatureV();
    error HighS();
    error BadSignature();
    error TransferFailed();
    error DepositMismatch();

    // ------------------------------------------------------------ setup

    constructor() {
        cachedChainId = block.chainid;
        cachedDomainSeparator = _buildDomainSeparator();
    }

    modifier nonReentrant() {
        if (locked) revert Reentrancy();
        locked = true;
        _;
        locked = false;
    }

    // ------------------------------------------------------------ renter

    /// Opens a channel from msg.sender (the renter) to `provider`, pulling
    /// `amount` of `token` (approve it first). Vouchers signed by `signer` pay
    /// the provider; from `expiry` (unix seconds) on, the renter may refund.
    function open(address provider, address token, uint256 amount, uint64 expiry, address signer)
        external
        nonReentrant
        returns (bytes32 id)
    {
        if (provider == address(0) || token == address(0) || signer == address(0)) revert ZeroAddress();
        if (amount == 0) revert ZeroAmount();
        if (amount > type(uint96).max) revert AmountTooLarge();
        if (expiry <= block.timestamp || expiry > type(uint48).max) revert BadExpiry();
        uint256 nonce = nextNonce;
        id = _channelId(msg.sender, provider, token, nonce);
        nextNonce = nonce + 1;
        Channel storage c = channels[id];
        c.renter = msg.sender;
        c.expiry = uint48(expiry);
        c.provider = provider;
        c.deposit = uint96(amount);
        c.token = token;
        if (signer != msg.sender) c.signer = signer; // else the renter: one slot less
        emit Opened(id, msg.sender, provider, token, signer, amount, expiry);
        _pullExact(token, msg.sender, amount);
    }

    /// Adds `amount` (may be 0) to the deposit and moves the expiry to
    /// `newExpiry` (>= the current one). Renter only; not while a close is pending.
    function topUp(bytes32 id, uint256 amount, uint64 newExpiry) external nonReentrant {
        Channel storage c = channels[id];
        address renter = c.renter;
        if (renter == address(0)) revert NoSuchChannel();
        if (msg.sender != renter) revert NotRenter();
        if (c.closeAt != 0) revert ClosePending();
        if (newExpiry < c.expiry || newExpiry > type(uint48).max) revert BadExpiry();
        uint256 deposit = uint256(c.deposit) + amount;
        if (deposit > type(uint96).max) revert AmountTooLarge();
        c.expiry = uint48(newExpiry);
        c.deposit = uint96(deposit);
        emit ToppedUp(id, deposit, newExpiry);
        if (amount != 0) _pullExact(c.token, renter, amount);
    }

    /// From the expiry on: everything not paid goes back to the renter and the
    /// channel is deleted. Renter only.
    function refund(bytes32 id) external nonReentrant {
        Channel storage c = channels[id];
        address renter = c.renter;
        if (renter == address(0)) revert NoSuchChannel();
        if (msg.sender != renter) revert NotRenter();
        if (block.timestamp < c.expiry) revert NotExpired();
        _end(id, c, renter, c.paid, 0);
    }

    /// Starts the renter's close: CHALLENGE_WINDOW seconds from now,
    /// finishClose() refunds what is not paid by then. The provider can still
    /// redeem or close meanwhile. Renter only, once.
    function startClose(bytes32 id) external nonReentrant {
        Channel storage c = channels[id];
        address renter = c.renter;
        if (renter == address(0)) revert NoSuchChannel();
        if (msg.sender != renter) revert NotRenter();
        if (c.closeAt != 0) revert CloseAlreadyStarted();
        uint256 closeAt = block.timestamp + CHALLENGE_WINDOW;
        c.closeAt = uint48(closeAt);
        emit CloseStarted(id, uint64(closeAt));
    }

    /// After the challenge window: refunds the rest to the renter and deletes
    /// the channel. Renter only.
    function finishClose(bytes32 id) external nonReentrant {
        Channel storage c = channels[id];
        address renter = c.renter;
        if (renter == address(0)) revert NoSuchChannel();
        if (msg.sender != renter) revert NotRenter();
        uint256 closeAt = c.closeAt;
        if (closeAt == 0) revert CloseNotStarted();
        if (block.timestamp < closeAt) revert ChallengeWindowOpen();
        _end(id, c, renter, c.paid, 0);
    }

    // ------------------------------------------------------------ provider

    /// Pays the provider `cumulative` - paid for a voucher signed by the
    /// channel's signer. Anyone may submit it (a broker or watchtower for an
    /// offline provider); the payout always goes to the provider. The channel
    /// stays open.
    function redeem(bytes32 id, uint256 cumulative, bytes calldata sig) external nonReentrant {
        Channel storage c = channels[id];
        address provider = c.provider;
        if (provider == address(0)) revert NoSuchChannel();
        uint256 paid = c.paid;
        _checkClaim(id, cumulative, paid, c.deposit, _signer(c), sig);
        c.paid = uint96(cumulative);
        emit Redeemed(id, cumulative, cumulative - paid);
        _push(c.token, provider, cumulative - paid);
    }

    /// Ends the channel: pays the provider `cumulative` - paid for a voucher
    /// and refunds the rest to the renter. Provider only, because a stale
    /// voucher (a lower cumulative amount) submitted by someone else would cut
    /// the provider short. An empty `sig` (with cumulative 0) closes without
    /// a new payment.
    function close(bytes32 id, uint256 cumulative, bytes calldata sig) external nonReentrant {
        Channel storage c = channels[id];
        address provider = c.provider;
        if (provider == address(0)) revert NoSuchChannel();
        if (msg.sender != provider) revert NotProvider();
        uint256 paid = c.paid;
        if (sig.length == 0 && cumulative == 0) {
            _end(id, c, c.renter, paid, 0);
        } else {
            _checkClaim(id, cumulative, paid, c.deposit, _signer(c), sig);
            _end(id, c, c.renter, cumulative, cumulative - paid);
        }
    }

    // ------------------------------------------------------------ views

    /// The EIP-712 digest a signer signs for this voucher.
    function voucherDigest(bytes32 id, uint256 cumulative) public view returns (bytes32 digest) {
        bytes32 structHash = keccak256(abi.encode(VOUCHER_TYPEHASH, id, cumulative));
        bytes32 separator = domainSeparator();
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, hex"1901")
            mstore(add(m, 0x02), separator)
            mstore(add(m, 0x22), structHash)
            digest := keccak256(m, 0x42)
        }
    }

    function domainSeparator() public view returns (bytes32) {
        return block.chainid == cachedChainId ? cachedDomainSeparator : _buildDomainSeparator();
    }

    /// EIP-5267: what a wallet needs to build the typed data (fields 0x0f:
    /// name, version, chainId, verifyingContract).
    function eip712Domain()
        external
        view
        returns (
            bytes1 fields,
            string memory name,
            string memory version,
            uint256 chainId,
            address verifyingContract,
            bytes32 salt,
            uint256[] memory extensions
        )
    {
        return (hex"0f", NAME, VERSION, block.chainid, address(this), bytes32(0), new uint256[](0));
    }

    /// The id the renter's next open() to (provider, token) gets if no other
    /// open() comes before it (the nonce is contract-wide): the id to use is
    /// the one open() returns and Opened carries.
    function nextChannelId(address renter, address provider, address token) external view returns (bytes32) {
        return _channelId(renter, provider, token, nextNonce);
    }

    /// Whose vouchers pay on channel `id` (address(0) for no such channel).
    function signerOf(bytes32 id) external view returns (address) {
        return _signer(channels[id]);
    }

    // ------------------------------------------------------------ internals

    function _channelId(address renter, address provider, address token, uint256 nonce)
        private
        view
        returns (bytes32)
    {
        return keccak256(abi.encode(renter, provider, token, nonce, block.chainid, address(this)));
    }

    function _signer(Channel storage c) private view returns (address signer) {
        signer = c.signer;
        if (signer == address(0)) signer = c.renter;
    }

    function _buildDomainSeparator() private view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    // Reverts unless `sig` is the signer's voucher for (id, cumulative) and
    // cumulative is new (> paid) and covered (<= deposit).
    function _checkClaim(
        bytes32 id,
        uint256 cumulative,
        uint256 paid,
        uint256 deposit,
        address signer,
        bytes calldata sig
    ) private view {
        if (cumulative > deposit) revert OverClaim();
        if (cumulative <= paid) revert StaleVoucher();
        if (sig.length != 65) revert BadSignatureLength();
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly ("memory-safe") {
            r := calldataload(sig.offset)
            s := calldataload(add(sig.offset, 0x20))
            v := byte(0, calldataload(add(sig.offset, 0x40)))
        }
        if (v != 27 && v != 28) revert BadSignatureV();
        if (uint256(s) > HALF_N) revert HighS();
        address recovered = ecrecover(voucherDigest(id, cumulative), v, r, s);
        if (recovered == address(0) || recovered != signer) revert BadSignature();
    }

    // Deletes the channel (all four slots), then pays `payout` to the provider
    // and deposit - paid to the renter, where `paid` (<= deposit, checked by
    // the caller) is the provider's total including this payout. State first,
    // transfers last.
    function _end(bytes32 id, Channel storage c, address renter, uint256 paid, uint256 payout) private {
        address provider = c.provider;
        address token = c.token;
        uint256 rest = uint256(c.deposit) - paid;
        delete channels[id];
        emit Closed(id, paid, rest);
        if (payout != 0) _push(token, provider, payout);
        if (rest != 0) _push(token, renter, rest);
    }

    // transfer(to, amount) that accepts a token returning true or nothing
    // (then the token must have code), and fails on false, revert or garbage.
    function _push(address token, address to, uint256 amount) private {
        bool ok;
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, shl(224, 0xa9059cbb))
            mstore(add(m, 0x04), and(to, 0xffffffffffffffffffffffffffffffffffffffff))
            mstore(add(m, 0x24), amount)
            mstore(0x00, 0)
            ok := call(gas(), token, 0, m, 0x44, 0x00, 0x20)
            ok := and(
                ok,
                or(
                    and(gt(returndatasize(), 0x1f), eq(mload(0x00), 1)),
                    and(iszero(returndatasize()), gt(extcodesize(token), 0))
                )
            )
        }
        if (!ok) revert TransferFailed();
    }

    // transferFrom(from, this, amount) with the same checks as _push, and the
    // contract's balance must grow by exactly `amount` (no fee-on-transfer;
    // no credit for tokens a callback slipped in).
    function _pullExact(address token, address from, uint256 amount) private {
        uint256 before = _balance(token);
        bool ok;
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, shl(224, 0x23b872dd))
            mstore(add(m, 0x04), and(from, 0xffffffffffffffffffffffffffffffffffffffff))
            mstore(add(m, 0x24), address())
            mstore(add(m, 0x44), amount)
            mstore(0x00, 0)
            ok := call(gas(), token, 0, m, 0x64, 0x00, 0x20)
            ok := and(
                ok,
                or(
                    and(gt(returndatasize(), 0x1f), eq(mload(0x00), 1)),
                    and(iszero(returndatasize()), gt(extcodesize(token), 0))
                )
            )
        }
        if (!ok) revert TransferFailed();
        if (_balance(token) != before + amount) revert DepositMismatch();
    }

    // balanceOf(this); reverts with TransferFailed when the call fails or
    // returns less than a word (no code at `token`, for one).
    function _balance(address token) private view returns (uint256 bal) {
        bool ok;
        assembly ("memory-safe") {
            mstore(0x00, shl(224, 0x70a08231))
            mstore(0x04, address())
            ok := staticcall(gas(), token, 0x00, 0x24, 0x00, 0x20)
            ok := and(ok, gt(returndatasize(), 0x1f))
            bal := mload(0x00)
        }
        if (!ok) revert TransferFailed();
    }
}
